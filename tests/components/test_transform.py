"""transform: packing, per-token byte counts, the TFRecord contract, statistics and
byte-identical reruns, checked against an independent packing with the SentencePiece library."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from components.data.packing import pack
from components.data.tokenize import frame_document, token_byte_counts
from tests.components.data_fixtures import (TRICKY_TEXTS, read_documents, run_ingest,
                                            run_tokenizer, run_transform, tree_bytes)
from tests.conftest import REPO, run_lmpipe, tiny_documents, write_jsonl

LENGTH = 32
LONG_TEXT = " ".join(f"word{i}" for i in range(120))  # spans several windows


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transform")
    records = (tiny_documents() + [{"text": t, "domain": "tricky"} for t in TRICKY_TEXTS]
               + [{"text": LONG_TEXT, "domain": "long"}, {"text": "no domain at all"}])
    write_jsonl(tmp / "corpus" / "a.jsonl", records)
    run_ingest(tmp, [str(tmp / "corpus")], tmp / "documents", domain_field="domain",
               eval_fraction=0.2)
    run_tokenizer(tmp, tmp / "documents", tmp / "tokenizer", vocab_size=360)
    run_transform(tmp, tmp / "documents", tmp / "tokenizer", tmp / "out", sequence_length=LENGTH)
    return tmp


def _read(examples_dir, split):
    from components.data.reader import read_examples

    return [{k: v.numpy() for k, v in example.items()}
            for example in read_examples(str(examples_dir), split)]


def _windows(artifacts, split):
    return _read(artifacts / "out" / "examples", split)


def _processor(artifacts):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(artifacts / "tokenizer" / "spm.model"))


def _info(artifacts):
    from models.tokenizer_info import read_info

    return read_info(str(artifacts / "tokenizer"))


def test_pack_by_hand():
    documents = [(np.array([2, 10, 11, 3]), np.array([0, 3, 2, 0])),
                 (np.array([2, 20, 21, 22, 23, 3]), np.array([0, 1, 1, 1, 1, 0])),
                 (np.array([2, 30, 3]), np.array([0, 5, 0]))]
    windows = pack(documents, length=5, pad_id=0)
    assert windows["token_ids"].tolist() == [[2, 10, 11, 3, 2], [20, 21, 22, 23, 3],
                                             [2, 30, 3, 0, 0]]
    assert windows["segment_ids"].tolist() == [[1, 1, 1, 1, 2], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert windows["num_bytes"].tolist() == [5, 4, 5]
    exact = pack(documents[:1], length=4, pad_id=9)
    assert exact["token_ids"].tolist() == [[2, 10, 11, 3]] and exact["num_bytes"].tolist() == [5]
    assert pack([], length=4, pad_id=0)["token_ids"].shape == (0, 4)


def test_token_byte_counts_give_each_byte_to_one_token():
    # Byte-fallback pieces of one character share offsets (ends 0, 0, 3 for a 3-byte char).
    assert token_byte_counts(np.array([0, 0, 3, 3, 3, 6]), 6).tolist() == [0, 0, 3, 0, 0, 3]
    assert token_byte_counts(np.array([1, 1, 3, 7]), 7).tolist() == [1, 0, 2, 4]
    assert token_byte_counts(np.array([2, 4]), 6).tolist() == [2, 4]  # remainder to the last
    tokens, token_bytes = frame_document(np.array([], np.int32), np.array([], np.int32), 4, 2, 3)
    assert tokens.tolist() == [2, 3] and token_bytes.tolist() == [0, 4]


def test_byte_counts_with_the_real_tokenizer(artifacts):
    import tensorflow as tf

    from models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(artifacts / "tokenizer"))
    texts = TRICKY_TEXTS + ["Ωmega ∑ 🚀 unseen"]
    ids, _, ends = tokenizer.tokenize_with_offsets(tf.constant(texts))
    for i, text in enumerate(texts):
        counts = token_byte_counts(ends[i].numpy(), len(text.encode()))
        assert counts.sum() == len(text.encode()) and (counts >= 0).all()
        assert len(counts) == len(ids[i])


def _expected_windows(documents: list[dict], processor, info) -> list[tuple]:
    """Pack independently: per domain, documents in id order, cut every LENGTH tokens.

    The corpus is small, so every domain is one packing group.
    """
    by_domain = defaultdict(list)
    for document in documents:
        by_domain[document["domain"]].append(document["text"])
    expected = []
    for domain, texts in by_domain.items():
        texts.sort(key=lambda t: hashlib.sha256(t.encode()).hexdigest())
        stream, owner = [], []
        for k, text in enumerate(texts):
            ids = [info.bos_id] + processor.encode(text) + [info.eos_id]
            stream += ids
            owner += [k] * len(ids)
        for start in range(0, len(stream), LENGTH):
            tokens, owners = stream[start:start + LENGTH], owner[start:start + LENGTH]
            pad = LENGTH - len(tokens)
            expected.append((domain, tuple(tokens + [info.pad_id] * pad),
                             tuple([o - owners[0] + 1 for o in owners] + [0] * pad)))
    return sorted(expected)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_examples_are_an_exact_packing_of_the_documents(artifacts, split):
    documents = read_documents(artifacts / "documents")[split]
    windows = _windows(artifacts, split)
    got = sorted((w["domain"][0].decode(), tuple(w["token_ids"]), tuple(w["segment_ids"]))
                 for w in windows)
    assert got == _expected_windows(documents, _processor(artifacts), _info(artifacts))
    for w in windows:
        assert w["token_ids"].shape == w["segment_ids"].shape == (LENGTH,)
        assert w["token_ids"].dtype == w["num_bytes"].dtype == np.int64
        assert w["num_bytes"].shape == w["domain"].shape == (1,)


def test_segments_decode_back_to_the_documents(artifacts):
    processor, info = _processor(artifacts), _info(artifacts)
    documents = read_documents(artifacts / "documents")["train"]
    texts = {(d["domain"], d["text"]) for d in documents}
    whole = []
    for w in _windows(artifacts, "train"):
        for segment in set(w["segment_ids"].tolist()) - {0}:
            ids = w["token_ids"][w["segment_ids"] == segment].tolist()
            if ids[0] == info.bos_id and ids[-1] == info.eos_id:
                whole.append((w["domain"][0].decode(), processor.decode(ids[1:-1])))
    windows = _windows(artifacts, "train")
    assert set(whole) <= texts and len(set(whole)) == len(whole)
    # Each window boundary cuts at most one document; the rest decode whole.
    assert len(texts) - len(whole) <= len(windows)
    assert ("long", LONG_TEXT) not in whole and ("long", LONG_TEXT) in texts


@pytest.mark.parametrize("split", ["train", "eval"])
def test_num_bytes_sum_to_the_corpus_bytes_per_domain(artifacts, split):
    documents = read_documents(artifacts / "documents")[split]
    expected = Counter()
    for d in documents:
        expected[d["domain"]] += len(d["text"].encode("utf-8"))
    got = Counter()
    for w in _windows(artifacts, split):
        got[w["domain"][0].decode()] += int(w["num_bytes"][0])
    assert got == expected


def test_statistics_and_feature_spec_against_direct_counts(artifacts):
    processor, info = _processor(artifacts), _info(artifacts)
    stats = json.loads((artifacts / "out" / "statistics" / "stats.json").read_text())
    spec = json.loads((artifacts / "out" / "examples" / "feature_spec.json").read_text())
    assert spec["sequence_length"] == LENGTH and spec["pad_id"] == info.pad_id
    assert spec["compression"] == "none"
    assert spec["features"]["token_ids"] == {"dtype": "int64", "shape": [LENGTH]}
    assert spec["features"]["domain"] == {"dtype": "string", "shape": [1]}
    for split, documents in read_documents(artifacts / "documents").items():
        windows = _windows(artifacts, split)
        s = stats["splits"][split]
        text_tokens = sum(len(processor.encode(d["text"])) for d in documents)
        num_bytes = sum(len(d["text"].encode()) for d in documents)
        non_pad = sum(int((w["segment_ids"] != 0).sum()) for w in windows)
        assert spec["splits"][split]["examples"] == s["examples"] == len(windows)
        assert spec["splits"][split]["shards"] == ["%s-00000-of-00001.tfrecord" % split]
        assert s["documents"] == len(documents)
        assert s["text_tokens"] == text_tokens
        assert s["tokens"] == non_pad == text_tokens + 2 * len(documents)
        assert s["bytes"] == num_bytes
        assert s["tokens_per_byte"] == pytest.approx(text_tokens / num_bytes)
        assert s["packing_efficiency"] == pytest.approx(non_pad / (len(windows) * LENGTH))
        assert s["unknown_tokens"] == 0 and s["unknown_token_rate"] == 0.0
        per_domain = Counter()
        for w in windows:
            per_domain[w["domain"][0].decode()] += int((w["segment_ids"] != 0).sum())
        assert {d: v["tokens"] for d, v in s["domains"].items()} == dict(per_domain)
    assert stats["total"]["documents"] == sum(s["documents"] for s in stats["splits"].values())


def test_rerun_in_another_running_mode_is_byte_identical(artifacts, tmp_path):
    run_transform(tmp_path, artifacts / "documents", artifacts / "tokenizer", tmp_path / "out",
                  beam_args=("--direct_running_mode=multi_threading", "--direct_num_workers=2"),
                  sequence_length=LENGTH)
    assert tree_bytes(tmp_path / "out") == tree_bytes(artifacts / "out")


def test_gzip_examples_read_back_the_same(artifacts, tmp_path):
    run_transform(tmp_path, artifacts / "documents", artifacts / "tokenizer", tmp_path / "out",
                  sequence_length=LENGTH, compression="gzip")
    spec = json.loads((tmp_path / "out" / "examples" / "feature_spec.json").read_text())
    assert spec["compression"] == "gzip"
    plain, zipped = _windows(artifacts, "train"), _read(tmp_path / "out" / "examples", "train")
    assert len(zipped) == len(plain)
    for a, b in zip(plain, zipped):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_cli_runs_the_data_stage_and_reports_a_missing_input(tiny_config_file, tmp_path):
    done = run_lmpipe("run", "--config", tiny_config_file, "--until", "transform")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    assert [record["components"][n]["status"] for n in ("ingest", "tokenizer", "transform")] == [
        "executed"] * 3
    examples = record["components"]["transform"]["outputs"]["examples"]
    assert json.loads((REPO / examples / "feature_spec.json").read_text())["splits"]["train"][
        "examples"] > 0
    missing = tmp_path / "absent" / "*.jsonl"
    failed = run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                        "--set", f"data.inputs=['{missing}']")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"lmpipe: error: ingest: data.inputs: {missing} matches no files")
    assert "Traceback" not in failed.stderr
