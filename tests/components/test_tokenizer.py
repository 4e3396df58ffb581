"""tokenizer: deterministic sample, reproducible SentencePiece training, the artifact, and
the tf-text round trip that serving relies on."""

from __future__ import annotations

import json
import unicodedata

import pytest

from components.data import sentencepiece_training as training
from models.tokenizer_info import read_info
from pipeline.errors import UsageError
from tests.components.data_fixtures import TRICKY_TEXTS, run_ingest, run_tokenizer, tree_bytes
from tests.conftest import tiny_documents, write_jsonl

# Small enough that the characters of the tricky texts do not all fit (coverage is lowered).
VOCAB_SIZE = 360
UNSEEN_TEXTS = ["Ωmega ∑ ≠ ∞ and 🚀 never seen", "ﬁ ligature stays",
                "tab\tat\tthe end\t"]


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokenizer")
    records = tiny_documents() + [{"text": t, "domain": "tricky"} for t in TRICKY_TEXTS * 3]
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
    sample = training.sample_texts(texts, total, 2000, seed=1)
    assert sample == training.sample_texts(list(texts), total, 2000, seed=1)
    assert 1900 < sum(len(t.encode()) for t in sample) <= 2000
    assert set(sample) <= set(texts)
    assert sample != training.sample_texts(texts, total, 2000, seed=2)
    keys = [training.sample_key(1, t) for t in sample]
    assert keys == sorted(keys)
    assert sorted(training.sample_texts(texts, total, 10**9, seed=1)) == sorted(texts)


def test_vocabulary_too_large_for_the_sample_is_a_usage_error(documents, tmp_path):
    with pytest.raises(UsageError, match="tokenizer.vocab_size=20000 does not suit"):
        run_tokenizer(tmp_path, documents, tmp_path / "big", vocab_size=20000)


def test_sample_smaller_than_every_document_is_a_usage_error(documents, tmp_path):
    with pytest.raises(UsageError, match="tokenizer.sample_bytes=5 is smaller"):
        run_tokenizer(tmp_path, documents, tmp_path / "tiny", sample_bytes=5)
