"""tokenizer: deterministic sample, reproducible SentencePiece and WordPiece training, the
artifact (also on a non-local filesystem), and identical ids in the transform's engine,
tf-text and a SavedModel reloaded in a fresh process, which is what serving relies on."""

from __future__ import annotations

import json
import unicodedata

import pytest

from components.tokenizer import sentencepiece as training
from components.tokenizer import sample as tokenizer_sample
from pipeline.core.contracts.tokenizer import read_info
from pipeline.core.errors import UsageError
from tests.components.data_fixtures import TRICKY_TEXTS, run_ingest, run_tokenizer, tree_bytes
from tests.conftest import REPO, tiny_documents, write_jsonl

# Small enough that the characters of the tricky texts do not all fit (coverage is lowered).
VOCAB_SIZE = 360
UNSEEN_TEXTS = ["Ωmega ∑ ≠ ∞ and 🚀 never seen", "ﬁ ligature stays",
                "tab\tat\tthe end\t"]


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokenizer")
    # Three variants of each (exact duplicates would be removed by ingest).
    records = tiny_documents() + [{"text": f"{t} ({i})", "domain": "tricky"}
                                  for i in range(3) for t in TRICKY_TEXTS]
    write_jsonl(tmp / "corpus" / "a.jsonl", records)
    run_ingest(tmp, [str(tmp / "corpus")], tmp / "documents", domain_field="domain",
               eval_fraction=0.2)
    return tmp / "documents"


@pytest.fixture(scope="module")
def bpe(documents, tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe")
    run_tokenizer(out, documents, out / "tokenizer", type="bpe", vocab_size=VOCAB_SIZE)
    return out / "tokenizer"


def test_training_twice_gives_byte_identical_artifacts(documents, bpe, tmp_path):
    run_tokenizer(tmp_path, documents, tmp_path / "again", type="bpe", vocab_size=VOCAB_SIZE)
    first, second = tree_bytes(bpe), tree_bytes(tmp_path / "again")
    assert sorted(first) == ["spm.model", "tokenizer.json", "training.json", "vocab.txt"]
    assert first == second
    assert read_info(str(bpe)).options == {"separable": True}


def test_special_ids_come_from_the_artifact(bpe):
    import sentencepiece as spm

    info = read_info(str(bpe))
    processor = spm.SentencePieceProcessor(model_file=str(bpe / info.model_file))
    vocab = (bpe / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert info.type == "bpe" and info.normalization == "NFC"
    assert info.vocab_size == processor.get_piece_size() == len(vocab) == VOCAB_SIZE
    assert set(info.special_tokens) == {"pad", "unk", "bos", "eos", "mask"}
    assert len(set(info.special_tokens.values())) == 5
    assert (info.pad_id, info.bos_id, info.eos_id) == (
        processor.pad_id(), processor.bos_id(), processor.eos_id())
    assert info.special_tokens["unk"] == processor.unk_id()
    names = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"}
    for name, token_id in info.special_tokens.items():
        assert vocab[token_id] == names[name]
    assert processor.is_control(info.special_tokens["mask"])
    assert all(json.loads(f'"{line}"') == processor.id_to_piece(i) for i, line in enumerate(vocab))


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_tf_text_round_trip_gives_the_normalized_text(kind, documents, bpe, tmp_path):
    import sentencepiece as spm
    import tensorflow as tf

    from models.tokenizer import load_tokenizer

    directory = bpe
    if kind == "unigram":
        directory = tmp_path / "unigram"
        run_tokenizer(tmp_path, documents, directory, type="unigram", vocab_size=320)
    tokenizer = load_tokenizer(str(directory))
    texts = TRICKY_TEXTS + UNSEEN_TEXTS
    ids = tokenizer.tokenize(tf.constant(texts))
    decoded = [t.decode("utf-8") for t in tokenizer.detokenize(ids).numpy()]
    assert decoded == [unicodedata.normalize("NFC", t) for t in texts]
    # The same ids as the SentencePiece library itself, and byte fallback, never <unk>.
    processor = spm.SentencePieceProcessor(model_file=str(directory / "spm.model"))
    normalized = [unicodedata.normalize("NFC", t) for t in texts]
    assert ids.to_list() == processor.encode(normalized)
    unk = read_info(str(directory)).special_tokens["unk"]
    assert unk not in ids.flat_values.numpy()


def test_smallest_vocabulary_lowers_character_coverage(tiny_corpus, tmp_path):
    run_ingest(tmp_path, [str(tiny_corpus)], tmp_path / "documents", eval_fraction=0.2)
    run_tokenizer(tmp_path, tmp_path / "documents", tmp_path / "small", vocab_size=300)
    record = json.loads((tmp_path / "small" / "training.json").read_text())
    assert read_info(str(tmp_path / "small")).vocab_size == 300
    assert record["character_coverage_requested"] == 0.9995
    assert 0.98 <= record["character_coverage_used"] < 0.9995
    assert record["seed"] == 0 and record["sample_documents"] > 150


def test_vocabulary_too_small_for_the_characters_is_a_usage_error(documents, tmp_path):
    # The tricky texts bring more characters than 300 - 261 pieces can hold at coverage 0.98.
    with pytest.raises(UsageError, match="tokenizer.vocab_size=300 does not suit .* "
                                         "smaller than required_chars"):
        run_tokenizer(tmp_path, documents, tmp_path / "small", vocab_size=300)


def test_fit_character_coverage_against_hand_counts():
    # Counts: e 1000, a 4, b 3, "▁" 3 (the spaces), c 2, d 1; total 1013. The 1000-fold
    # "e" keeps coverage above SentencePiece's 0.98 minimum.
    texts = ["aaaa bbb cc d" + "e" * 1000]
    total = 1013
    room_of_three = 5 + 256 + 8 + 3
    assert training.fit_character_coverage(texts, room_of_three, 0.9995) == pytest.approx(
        ((1000 + 4) / total + (1000 + 4 + 3) / total) / 2)
    assert training.fit_character_coverage(texts, room_of_three, 0.99) == 0.99
    assert training.fit_character_coverage(texts, 4000, 0.9995) == 0.9995
    assert training.fit_character_coverage(["abcdefgh"], room_of_three, 0.9995) == 0.98


def test_sample_is_seeded_deterministic_and_within_budget():
    texts = [f"document {i} " + "x" * (i % 17) for i in range(500)]
    total = sum(len(t.encode()) for t in texts)
    sample = tokenizer_sample.sample_texts(texts, total, 2000, seed=1)
    assert sample == tokenizer_sample.sample_texts(list(texts), total, 2000, seed=1)
    assert 1900 < sum(len(t.encode()) for t in sample) <= 2000
    assert set(sample) <= set(texts)
    assert sample != tokenizer_sample.sample_texts(texts, total, 2000, seed=2)
    keys = [tokenizer_sample.sample_key(1, t) for t in sample]
    assert keys == sorted(keys)
    assert sorted(tokenizer_sample.sample_texts(texts, total, 10**9, seed=1)) == sorted(texts)


def test_vocabulary_too_large_for_the_sample_is_a_usage_error(documents, tmp_path):
    with pytest.raises(UsageError, match="tokenizer.vocab_size=20000 does not suit"):
        run_tokenizer(tmp_path, documents, tmp_path / "big", vocab_size=20000)


def test_sample_smaller_than_every_document_is_a_usage_error(documents, tmp_path):
    with pytest.raises(UsageError, match="tokenizer.sample_bytes=5 is smaller"):
        run_tokenizer(tmp_path, documents, tmp_path / "tiny", sample_bytes=5)


# --- the transform's engine: the SentencePiece library, with a chunk cache for BPE ---

def _random_texts(count: int, seed: int) -> list[str]:
    """Texts dense in what the chunking cuts at: line breaks followed by runs of spaces."""
    import random

    rng = random.Random(seed)
    alphabet = ["\n", " ", "  ", "    ", "\t", "def", "x", "(", ")", ":", "é", "漢", "🤖", "1",
                "return", "self", "\n    ", "\n\n", "a", "_"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
            for _ in range(count)]


def test_chunked_encoding_gives_exactly_the_library_ids(bpe, tmp_path):
    import sentencepiece as spm

    from components.transform.tokenize import SentencePieceEncoder, separable_chunks

    model = (bpe / "spm.model").read_bytes()
    processor = spm.SentencePieceProcessor(model_proto=model)
    texts = TRICKY_TEXTS + UNSEEN_TEXTS + _random_texts(400, seed=3) + [
        (REPO / name).read_text()
        for name in ("components/transform/packing.py", "components/shared/shards.py")]
    for text in texts:
        assert "".join(separable_chunks(text)) == text
    encoder = SentencePieceEncoder(model, separable=True)
    first, second = encoder.encode(texts), encoder.encode(texts[::-1])  # the second hits the cache
    expected = processor.encode(texts)
    assert [ids.tolist() for ids in first] == expected
    assert [ids.tolist() for ids in second] == expected[::-1]
    assert len(encoder.cache) > 0


def test_worker_processes_give_the_same_ids_and_bytes(bpe):
    from components.transform.tokenize import load_batch_tokenizer

    texts = TRICKY_TEXTS * 5 + _random_texts(50, seed=4)
    serial, _ = load_batch_tokenizer(str(bpe), processes=1)
    pooled, _ = load_batch_tokenizer(str(bpe), processes=2)
    try:
        a, b = serial.encode(texts), pooled.submit(texts).result()
    finally:
        pooled.close()
    assert len(a) == len(b) == len(texts)
    for (ids_a, bytes_a), (ids_b, bytes_b), text in zip(a, b, texts):
        assert ids_a.tolist() == ids_b.tolist()
        assert bytes_a.tolist() == bytes_b.tolist()
        # Identity normalization and byte fallback: every byte of the text is covered once.
        assert int(bytes_a.sum()) == len(text.encode("utf-8"))


# --- WordPiece ---

@pytest.fixture(scope="module")
def wordpiece(documents, tmp_path_factory):
    out = tmp_path_factory.mktemp("wordpiece")
    run_tokenizer(out, documents, out / "tokenizer", type="wordpiece", vocab_size=400)
    return out / "tokenizer"


def test_wordpiece_is_deterministic_with_bert_special_tokens(documents, wordpiece, tmp_path):
    run_tokenizer(tmp_path, documents, tmp_path / "again", type="wordpiece", vocab_size=400)
    assert tree_bytes(wordpiece) == tree_bytes(tmp_path / "again")
    assert sorted(tree_bytes(wordpiece)) == ["tokenizer.json", "training.json", "vocab.txt"]
    info = read_info(str(wordpiece))
    vocab = (wordpiece / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert info.type == "wordpiece" and info.model_file == "vocab.txt"
    assert info.vocab_size == len(vocab) <= 400
    assert {name: vocab[i] for name, i in info.special_tokens.items()} == {
        "pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]",
        "bos": "[CLS]", "eos": "[SEP]"}
    assert info.options == {"lower_case": False, "suffix_indicator": "##"}
    assert any(piece.startswith("##") for piece in vocab)


def test_wordpiece_tokenizes_words_and_marks_unseen_characters_unknown(wordpiece):
    import tensorflow as tf

    from models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(wordpiece))
    info = tokenizer.info
    seen = "Return the square root of x. Compute the greatest common divisor"
    texts = [seen, "Ωmega 🚀 Return", "  spaced\tout\n text  "]
    ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant(texts))
    assert ids.to_list() == tokenizer.tokenize(tf.constant(texts)).to_list()
    decoded = [t.decode() for t in tokenizer.detokenize(ids).numpy()]
    assert decoded[0] == "Return the square root of x . Compute the greatest common divisor"
    assert decoded[2] == "spaced out text"
    unk = info.special_tokens["unk"]
    assert ids.to_list()[1][:2] == [unk, unk] and unk not in ids.to_list()[0]
    # Offsets point at the words' bytes.
    first = texts[0].encode()
    words = [first[s:e].decode() for s, e in zip(starts.to_list()[0], ends.to_list()[0])]
    assert "".join(words) == texts[0].replace(" ", "")
    # Special ids are dropped on decode; the dense form decodes too.
    framed = tf.constant([[info.bos_id] + ids.to_list()[2] + [info.eos_id, info.pad_id]])
    assert tokenizer.detokenize(framed).numpy()[0].decode() == "spaced out text"


def test_wordpiece_lower_case_option(documents, tmp_path):
    import tensorflow as tf

    from models.tokenizer import load_tokenizer

    run_tokenizer(tmp_path, documents, tmp_path / "lower", type="wordpiece", vocab_size=400,
                  lower_case=True)
    tokenizer = load_tokenizer(str(tmp_path / "lower"))
    assert tokenizer.info.options["lower_case"] is True
    ids = tokenizer.tokenize(tf.constant(["RETURN THE SQUARE", "return the square"]))
    assert ids.to_list()[0] == ids.to_list()[1]


# --- one tokenization everywhere ---

_SAVED_MODEL_CHECK = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops; nothing else of ours is imported)
assert not any(m.split(".")[0] in ("models", "components", "pipeline") for m in sys.modules)
texts = json.loads(sys.argv[1])
served = {}
for path in sys.argv[2:]:
    ids = tf.saved_model.load(path).signatures["tokenize"](text=tf.constant(texts))["ids"]
    served[path] = tf.RaggedTensor.from_tensor(ids, padding=-1).to_list()
print(json.dumps(served))
"""


def _save_tokenizer(directory, export_dir) -> None:
    import tensorflow as tf

    from models.tokenizer import load_tokenizer

    module = tf.Module()
    module.tokenizer = load_tokenizer(str(directory))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(text):
        return {"ids": module.tokenizer.tokenize(text).to_tensor(default_value=-1)}

    tf.saved_model.save(module, str(export_dir), signatures={"tokenize": tokenize})


def test_saved_model_in_a_fresh_process_matches_the_transform_engine(bpe, wordpiece, tmp_path):
    import subprocess
    import sys

    from components.transform.tokenize import load_batch_tokenizer

    texts = TRICKY_TEXTS + UNSEEN_TEXTS + ["cafe\u0301 decomposed", "  return self.x\n"]
    artifacts = {str(tmp_path / "bpe"): bpe, str(tmp_path / "wordpiece"): wordpiece}
    for export_dir, directory in artifacts.items():
        _save_tokenizer(directory, export_dir)
    done = subprocess.run([sys.executable, "-c", _SAVED_MODEL_CHECK, json.dumps(texts),
                           *artifacts], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    # The transform sees ingest's NFC text; serving normalizes raw text itself.
    normalized = [unicodedata.normalize("NFC", t) for t in texts]
    for export_dir, directory in artifacts.items():
        engine, _ = load_batch_tokenizer(str(directory))
        assert served[export_dir] == [ids.tolist() for ids, _ in engine.encode(normalized)]


def test_artifact_loads_from_a_non_local_filesystem(bpe, wordpiece):
    import tensorflow as tf

    from models.tokenizer import load_tokenizer

    for name, directory in (("bpe", bpe), ("wordpiece", wordpiece)):
        remote = f"ram://artifacts/{name}"
        for path in directory.iterdir():
            with tf.io.gfile.GFile(f"{remote}/{path.name}", "wb") as f:
                f.write(path.read_bytes())
        assert read_info(remote) == read_info(str(directory))
        texts = tf.constant(TRICKY_TEXTS)
        assert (load_tokenizer(remote).tokenize(texts).to_list()
                == load_tokenizer(str(directory)).tokenize(texts).to_list())


@pytest.mark.parametrize("separable", [True, False])
def test_fast_and_public_sentencepiece_paths_give_the_same_ids(bpe, separable):
    import numpy as np
    import sentencepiece as spm

    from components.transform.tokenize import SentencePieceEncoder

    model = (bpe / "spm.model").read_bytes()
    texts = [*TRICKY_TEXTS, "def f(x):\n    return x  # tab\there", "", "   ", "Return the value."]
    reference = spm.SentencePieceProcessor(model_proto=model).encode(texts)
    fast = SentencePieceEncoder(model, separable)
    public = SentencePieceEncoder(model, separable)
    public.raw_encode = public._public_raw_encode  # the fallback when the fast path is absent
    assert fast.raw_encode != fast._public_raw_encode  # this sentencepiece offers the fast path
    for encoder in (fast, public):
        assert [ids.tolist() for ids in encoder.encode(texts)] == reference
        assert all(ids.dtype == np.int32 for ids in encoder.encode(texts))


@pytest.mark.parametrize("task, key", [({"type": "lm"}, "train.warm_start"),
                                       ({"type": "classification"}, "train.warm_start"),
                                       ({"type": "classification", "tokenizer": True},
                                        "task.tokenizer")])
def test_a_source_without_a_tokenizer_names_the_key_it_came_from(tmp_path, task, key):
    from components import tokenizer
    from tests.conftest import build_config, tiny_raw_config

    source = tmp_path / "not-a-model"
    (source / "saved_model").mkdir(parents=True)
    (source / "saved_model" / "saved_model.pb").write_bytes(b"")
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["train"]["warm_start"] = str(source)
    raw["task"] = {**raw.get("task", {}), "type": task["type"]}
    if task.get("tokenizer"):
        raw["task"]["tokenizer"] = str(source)
    if task["type"] != "lm":
        raw["data"]["label_field"] = "label"
    config = build_config(raw)
    with pytest.raises(UsageError, match=rf"^{key}: {source} is neither a tokenizer artifact "):
        tokenizer.resolve_source(config, {})
