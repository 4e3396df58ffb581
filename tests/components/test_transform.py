"""transform: packing, per-token byte counts, the hand-encoded TFRecords, the packing policy
(domain and length-bucket purity, mixed train leftovers), statistics and byte-identical
reruns, checked against an independent packing with the SentencePiece library."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from components.shared import example_wire, shards
from components.transform import packing
from components.transform.packing import pack
from pipeline.core.contracts import examples
from pipeline.core.contracts.examples import MIXED_DOMAIN
from components.transform.tokenize import frame_document, token_byte_counts
from tests.components.data_fixtures import (TRICKY_TEXTS, read_documents, run_ingest,
                                            run_tokenizer, run_transform, tree_bytes)
from tests.conftest import tiny_documents, write_jsonl

LENGTH = 32
EDGES = (8, 20)
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
    run_transform(tmp, tmp / "documents", tmp / "tokenizer", tmp / "out", sequence_length=LENGTH,
                  length_buckets=list(EDGES))
    return tmp


def _read(examples_dir, split):
    from tests.examples_reader import read_examples

    return [{k: v.numpy() for k, v in example.items()}
            for example in read_examples(str(examples_dir), split)]


def _windows(artifacts, split):
    return _read(artifacts / "out" / "examples", split)


def _processor(artifacts):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(artifacts / "tokenizer" / "spm.model"))


def _info(artifacts):
    from pipeline.core.contracts.tokenizer import read_info

    return read_info(str(artifacts / "tokenizer"))


# --- pure functions ---

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


def test_group_packer_streams_like_one_pack_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    documents = [(rng.integers(4, 99, n), rng.integers(0, 4, n)) for n in rng.integers(2, 12, 30)]
    buckets = np.arange(30) % 3
    packer = packing.GroupPacker(7, 0)
    parts = [packer.add("g", packing.documents_stream(documents[a:b], a, buckets[a:b]))
             for a, b in ((0, 9), (9, 10), (10, 30))]
    rest = packer.remainders()["g"]
    whole = packing.windows_of(packing.documents_stream(documents, 0, buckets), 7, 0)
    streamed = {k: np.concatenate([p[k] for p in parts]
                                  + [packing.windows_of(rest, 7, 0)[k]]) for k in whole}
    for key in ("token_ids", "segment_ids", "num_bytes", "bucket"):
        assert streamed[key].tolist() == whole[key].tolist()
    assert 0 < len(rest) < 7
    # A window's bucket is its first token's document's bucket.
    doc_of_first = np.repeat(np.arange(30), [len(t) for t, _ in documents])[::7]
    assert whole["bucket"].tolist() == buckets[doc_of_first].tolist()


def test_renumber_keeps_documents_of_different_groups_apart():
    a = packing.documents_stream([(np.array([2, 5, 3]), np.zeros(3))], 4, np.array([0]))
    b = packing.documents_stream([(np.array([7, 3]), np.zeros(2))], 4, np.array([1]))
    windows = packing.windows_of(packing.renumber([a, b]), 8, 0)
    assert windows["token_ids"].tolist() == [[2, 5, 3, 7, 3, 0, 0, 0]]
    assert windows["segment_ids"].tolist() == [[1, 1, 1, 2, 2, 0, 0, 0]]


def test_token_byte_counts_give_each_byte_to_one_token():
    # Byte-fallback pieces of one character share offsets (ends 0, 0, 3 for a 3-byte char).
    assert token_byte_counts(np.array([0, 0, 3, 3, 3, 6]), 6).tolist() == [0, 0, 3, 0, 0, 3]
    assert token_byte_counts(np.array([1, 1, 3, 7]), 7).tolist() == [1, 0, 2, 4]
    assert token_byte_counts(np.array([2, 4]), 6).tolist() == [2, 4]  # remainder to the last
    tokens, token_bytes = frame_document(np.array([], np.int32), np.array([], np.int64), 4, 2, 3)
    assert tokens.tolist() == [2, 3] and token_bytes.tolist() == [0, 4]


def test_varints_and_examples_match_protobuf_byte_for_byte():
    import tensorflow as tf

    values = [0, 1, 127, 128, 300, 16383, 16384, 2**35, 2**62]
    data, sizes = example_wire.varint_bytes(np.array(values))
    proto = tf.train.Int64List(value=values).SerializeToString()
    assert proto == b"\x0a" + example_wire.varint(len(data)) + data.tobytes()
    assert sizes.tolist() == [len(example_wire.varint(v)) for v in values]
    windows = {"token_ids": np.array([[5, 300, 2**20], [0, 1, 2]]),
               "segment_ids": np.array([[1, 1, 2], [1, 0, 0]]),
               "num_bytes": np.array([7, 2**30]), "bucket": np.array([1, 0])}
    domains, names = ["dé", ""], ["small", "large"]
    for i, record in enumerate(example_wire.serialize_windows(windows, domains, names)):
        feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(
            value=np.atleast_1d(windows[name][i]).tolist()))
            for name in ("num_bytes", "segment_ids", "token_ids")}
        feature["domain"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[domains[i].encode()]))
        feature["length_bucket"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[names[windows["bucket"][i]].encode()]))
        expected = tf.train.Example(features=tf.train.Features(feature=feature))
        assert tf.train.Example.FromString(record) == expected
        assert record == expected.SerializeToString(deterministic=True)


def test_serialized_examples_parse_back_with_tensorflow(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    windows = {"token_ids": rng.integers(0, 300_000, (20, 16)),
               "segment_ids": rng.integers(0, 200, (20, 16)),
               "num_bytes": rng.integers(0, 10**6, 20), "bucket": rng.integers(0, 3, 20)}
    domains = [["a", "dé", ""][i % 3] for i in range(20)]
    names = examples.bucket_names(EDGES)
    data, sizes = example_wire.encode_examples(windows, domains, names)
    path = tmp_path / "x.tfrecord"
    order = np.arange(20)[::-1]
    with shards.TFRecordFile(str(path), gzip=False) as out:
        out.write(data, sizes, order)
    spec = {"features": examples.features(16)}
    from tests.examples_reader import feature_description

    parsed = [tf.io.parse_single_example(r, feature_description(spec))
              for r in tf.data.TFRecordDataset(str(path))]  # also checks the CRCs
    assert len(parsed) == 20
    for i, example in zip(order, parsed):
        assert example["token_ids"].numpy().tolist() == windows["token_ids"][i].tolist()
        assert example["segment_ids"].numpy().tolist() == windows["segment_ids"][i].tolist()
        assert example["num_bytes"].numpy().tolist() == [windows["num_bytes"][i]]
        assert example["domain"].numpy()[0].decode() == domains[i]
        assert example["length_bucket"].numpy()[0].decode() == names[windows["bucket"][i]]
    assert names == ["0-7", "8-19", "20+"]


# --- the Beam run, against an independent packing ---

def _expected_windows(documents: list[dict], processor, info, split: str) -> list[tuple]:
    """Pack independently, by the documented policy (one documents shard here).

    Groups: domain (train) or (domain, length bucket) (eval), in sorted order, documents
    in file order; full windows per group; the rest padded (eval) or, for train, all
    groups' rests packed together (domain "(mixed)" unless one group fills the window).
    """
    names = examples.bucket_names(EDGES)
    groups = defaultdict(list)
    for k, document in enumerate(documents):
        ids = processor.encode(document["text"])
        bucket = names[int(np.searchsorted(EDGES, len(ids), side="right"))]
        key = (document["domain"],) if split == "train" else (document["domain"], bucket)
        groups[key].append([(token, (key, k), bucket) for token in
                            [info.bos_id] + ids + [info.eos_id]])

    def cut(stream, label):
        windows = []
        for start in range(0, len(stream), LENGTH):
            part = stream[start:start + LENGTH]
            owners = [owner for _, owner, _ in part]
            segments = [len(set(owners[:i + 1])) for i in range(len(part))]
            pad = LENGTH - len(part)
            domain = label if label is not None else (
                part[0][1][0][0] if len({o[0] for o in owners}) == 1 else "(mixed)")
            windows.append((domain, part[0][2],
                            tuple([t for t, _, _ in part] + [info.pad_id] * pad),
                            tuple(segments + [0] * pad)))
        return windows

    expected, rests = [], []
    for key in sorted(groups):
        stream = [token for document in groups[key] for token in document]
        full = len(stream) - len(stream) % LENGTH
        expected += cut(stream[:full], key[0])
        if full < len(stream):
            if split == "train":
                rests += stream[full:]
            else:
                expected += cut(stream[full:], key[0])
    return sorted(expected + cut(rests, None))


def _got(windows) -> list[tuple]:
    return sorted((w["domain"][0].decode(), w["length_bucket"][0].decode(),
                   tuple(w["token_ids"]), tuple(w["segment_ids"])) for w in windows)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_examples_are_the_documented_packing_of_the_documents(artifacts, split):
    documents = read_documents(artifacts / "documents")[split]
    windows = _windows(artifacts, split)
    assert _got(windows) == _expected_windows(documents, _processor(artifacts), _info(artifacts),
                                              split)
    for w in windows:
        assert w["token_ids"].shape == w["segment_ids"].shape == (LENGTH,)
        assert w["token_ids"].dtype == w["num_bytes"].dtype == np.int64
        assert w["num_bytes"].shape == w["domain"].shape == w["length_bucket"].shape == (1,)


def test_domains_beyond_max_domains_are_packed_and_counted_as_one(artifacts, tmp_path):
    """With `data.max_domains` 2 the two domains with the most documents keep their name;
    the others are packed (by the same documented policy) and counted as `(other)`, while
    the documents themselves keep their domain."""
    from components.shared.domains import OTHER_DOMAIN

    run_ingest(tmp_path, [str(artifacts / "corpus")], tmp_path / "documents",
               domain_field="domain", eval_fraction=0.2, max_domains=2)
    run_transform(tmp_path, tmp_path / "documents", artifacts / "tokenizer", tmp_path / "out",
                  sequence_length=LENGTH, length_buckets=list(EDGES))
    documents = read_documents(tmp_path / "documents")
    assert documents == read_documents(artifacts / "documents")
    sizes = Counter(d["domain"] for split in documents.values() for d in split)
    kept = sorted(sizes, key=lambda domain: (-sizes[domain], domain))[:2]
    ingest_stats = json.loads((tmp_path / "documents" / "stats.json").read_text())
    stats = json.loads((tmp_path / "out" / "statistics" / "stats.json").read_text())
    assert ingest_stats["domains_folded"] == len(sizes) - 2
    for split, docs in documents.items():
        folded = [{**d, "domain": d["domain"] if d["domain"] in kept else OTHER_DOMAIN}
                  for d in docs]
        listed = ingest_stats["splits"][split]["domains"]
        assert listed == {domain: {"documents": n, "bytes": sum(
            len(d["text"].encode()) for d in folded if d["domain"] == domain)}
            for domain, n in sorted(Counter(d["domain"] for d in folded).items())}
        assert _got(_windows(tmp_path, split)) == _expected_windows(
            folded, _processor(artifacts), _info(artifacts), split)
        assert set(stats["splits"][split]["domains"]) <= {*kept, OTHER_DOMAIN, MIXED_DOMAIN}


def test_train_leftovers_fill_one_extra_shard_and_eval_windows_are_pure(artifacts):
    spec = json.loads((artifacts / "out" / "examples" / "feature_spec.json").read_text())
    assert spec["splits"]["train"]["shards"] == ["train-00000-of-00002.tfrecord",
                                                 "train-00001-of-00002.tfrecord"]
    assert spec["splits"]["eval"]["shards"] == ["eval-00000-of-00001.tfrecord"]
    from tests.examples_reader import example_files
    import tensorflow as tf

    leftover_shard = example_files(str(artifacts / "out" / "examples"), spec, "train")[1]
    leftovers = list(tf.data.TFRecordDataset(leftover_shard))
    domains = {w["domain"][0].decode() for w in _windows(artifacts, "train")}
    assert 0 < len(leftovers) <= len(domains)
    # Only the leftover shard may pad, and only its last window.
    padded = [w for w in _windows(artifacts, "train") if (w["segment_ids"] == 0).any()]
    assert len(padded) <= 1


def test_segments_decode_back_to_the_documents(artifacts):
    processor, info = _processor(artifacts), _info(artifacts)
    documents = read_documents(artifacts / "documents")["train"]
    texts = {d["text"] for d in documents}
    whole = []
    windows = _windows(artifacts, "train")
    for w in windows:
        for segment in set(w["segment_ids"].tolist()) - {0}:
            ids = w["token_ids"][w["segment_ids"] == segment].tolist()
            if ids[0] == info.bos_id and ids[-1] == info.eos_id:
                whole.append(processor.decode(ids[1:-1]))
    assert set(whole) <= texts and len(set(whole)) == len(whole)
    # A document is cut by a window boundary or by the end of its group at most once per window.
    assert len(texts) - len(whole) <= 2 * len(windows)
    assert LONG_TEXT not in whole and LONG_TEXT in texts


def test_num_bytes_add_up_to_the_corpus_bytes(artifacts):
    for split in ("train", "eval"):
        documents = read_documents(artifacts / "documents")[split]
        expected = Counter()
        for d in documents:
            expected[d["domain"]] += len(d["text"].encode("utf-8"))
        got = Counter()
        for w in _windows(artifacts, split):
            got[w["domain"][0].decode()] += int(w["num_bytes"][0])
        assert sum(got.values()) == sum(expected.values())
        if split == "eval":  # pure windows: per domain too
            assert got == expected


def test_statistics_feature_spec_and_plots_against_direct_counts(artifacts):
    processor, info = _processor(artifacts), _info(artifacts)
    stats = json.loads((artifacts / "out" / "statistics" / "stats.json").read_text())
    spec = json.loads((artifacts / "out" / "examples" / "feature_spec.json").read_text())
    assert spec["sequence_length"] == LENGTH and spec["pad_id"] == info.pad_id
    assert spec["gzip"] is False
    assert spec["features"]["token_ids"] == {"dtype": "int64", "shape": [LENGTH]}
    assert spec["features"]["length_bucket"] == {"dtype": "string", "shape": [1]}
    assert spec["length_buckets"] == {"edges": list(EDGES), "names": ["0-7", "8-19", "20+"]}
    ingest_stats = json.loads((artifacts / "documents" / "stats.json").read_text())
    assert stats["ingest"]["dropped"] == ingest_stats["dropped"]
    assert stats["ingest"]["documents_read"] == ingest_stats["documents_read"]
    for split, documents in read_documents(artifacts / "documents").items():
        windows = _windows(artifacts, split)
        s = stats["splits"][split]
        lengths = [len(processor.encode(d["text"])) for d in documents]
        num_bytes = sum(len(d["text"].encode()) for d in documents)
        non_pad = sum(int((w["segment_ids"] != 0).sum()) for w in windows)
        assert spec["splits"][split]["examples"] == s["examples"] == len(windows)
        assert s["documents"] == len(documents)
        assert s["text_tokens"] == sum(lengths)
        assert s["tokens"] == non_pad == sum(lengths) + 2 * len(documents)
        assert s["bytes"] == num_bytes
        assert s["tokens_per_byte"] == pytest.approx(sum(lengths) / num_bytes)
        assert s["packing_efficiency"] == pytest.approx(non_pad / (len(windows) * LENGTH))
        assert s["unknown_tokens"] == 0 and s["unknown_token_rate"] == 0.0
        per_domain = Counter()
        for d, n in zip(documents, lengths):
            per_domain[d["domain"]] += n + 2
        assert {d: v["tokens"] for d, v in s["domains"].items() if v["documents"]} == per_domain
        histogram = Counter(n.bit_length() for n in lengths)
        assert [(h["min_tokens"], h["documents"]) for h in s["length_histogram"]] == [
            ((1 << k) >> 1, histogram[k]) for k in sorted(histogram)]
        buckets = Counter(examples.bucket_names(EDGES)[int(np.searchsorted(EDGES, n, "right"))]
                          for n in lengths)
        assert {b: v["documents"] for b, v in s["length_buckets"].items()} == buckets
    assert stats["total"]["documents"] == sum(s["documents"] for s in stats["splits"].values())
    for name in ("length_histogram.png", "domain_tokens.png"):
        assert (artifacts / "out" / "statistics" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_with_worker_processes_and_another_running_mode_is_byte_identical(artifacts,
                                                                                 tmp_path):
    run_transform(tmp_path, artifacts / "documents", artifacts / "tokenizer", tmp_path / "out",
                  beam_args=("--direct_running_mode=multi_threading", "--direct_num_workers=2"),
                  sequence_length=LENGTH, length_buckets=list(EDGES), tokenizer_processes=2)
    assert tree_bytes(tmp_path / "out") == tree_bytes(artifacts / "out")


def test_padded_train_tails_and_gzip_read_back_the_same_tokens(artifacts, tmp_path):
    run_transform(tmp_path, artifacts / "documents", artifacts / "tokenizer", tmp_path / "out",
                  sequence_length=LENGTH, length_buckets=list(EDGES), gzip=True,
                  mix_train_tails=False)
    spec = json.loads((tmp_path / "out" / "examples" / "feature_spec.json").read_text())
    assert spec["gzip"] is True
    # gzip wraps the same records: the eval shard (not touched by the tails' policy)
    # decompresses to the plain run's bytes.
    shard = "eval-00000-of-00001.tfrecord"
    assert gzip.decompress((tmp_path / "out" / "examples" / shard).read_bytes()) == \
        (artifacts / "out" / "examples" / shard).read_bytes()
    assert spec["splits"]["train"]["shards"] == ["train-00000-of-00001.tfrecord"]
    assert _got(_read(tmp_path / "out" / "examples", "eval")) == _got(_windows(artifacts, "eval"))
    padded = _read(tmp_path / "out" / "examples", "train")
    assert {w["domain"][0].decode() for w in padded} == {
        d["domain"] for d in read_documents(artifacts / "documents")["train"]}
    tokens = Counter(t for w in padded for t in w["token_ids"][w["segment_ids"] != 0].tolist())
    assert tokens == Counter(t for w in _windows(artifacts, "train")
                             for t in w["token_ids"][w["segment_ids"] != 0].tolist())


def test_tokenizer_processes_use_the_cores_only_when_beam_runs_in_this_process():
    import os

    from components.transform import tokenizer_processes
    from pipeline.core.config import TransformConfig

    auto, two = TransformConfig(), TransformConfig(tokenizer_processes=2)
    cores = os.cpu_count()
    assert tokenizer_processes(auto, ()) == cores  # the default mode is in_memory
    assert tokenizer_processes(auto, ("--direct_running_mode=in_memory",)) == cores
    assert tokenizer_processes(auto, ("--direct_running_mode=multi_processing",
                                      "--direct_num_workers=2")) == 1
    assert tokenizer_processes(auto, ("--runner=DataflowRunner", "--project=p")) == 1
    assert tokenizer_processes(two, ("--runner=DataflowRunner",)) == 2


def test_wordpiece_transform_counts_unknown_tokens(artifacts, tmp_path):
    """A WordPiece tokenizer (the tf-text engine) trained on one corpus, applied to
    documents with characters it never saw: each unseen character is one [UNK] (BERT's
    basic tokenization makes each CJK character a word), and the rate is per text token."""
    from pipeline.core.contracts.tokenizer import read_info

    run_tokenizer(tmp_path, artifacts / "documents", tmp_path / "wordpiece", type="wordpiece",
                  vocab_size=400)
    unseen = "鳥鷺鶴"
    records = [{"text": f"Return the square root {unseen[:1 + i % 3]} of x number {i}.",
                "domain": "d"} for i in range(30)]
    write_jsonl(tmp_path / "corpus" / "a.jsonl", records)
    run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "documents",
               domain_field="domain", eval_fraction=0.3)
    run_transform(tmp_path, tmp_path / "documents", tmp_path / "wordpiece", tmp_path / "out",
                  sequence_length=LENGTH)
    stats = json.loads((tmp_path / "out" / "statistics" / "stats.json").read_text())
    unk = read_info(str(tmp_path / "wordpiece")).special_tokens["unk"]
    for split, documents in read_documents(tmp_path / "documents").items():
        s = stats["splits"][split]
        expected = sum(sum(c in unseen for c in d["text"]) for d in documents)
        windows = _read(tmp_path / "out" / "examples", split)
        in_windows = sum(int((w["token_ids"][w["segment_ids"] != 0] == unk).sum())
                         for w in windows)
        assert s["unknown_tokens"] == in_windows == expected > 0
        assert s["unknown_token_rate"] == pytest.approx(expected / s["text_tokens"])
    total = stats["total"]
    assert total["unknown_tokens"] == sum(1 + i % 3 for i in range(30))


@pytest.fixture(scope="module")
def demo_statistics(tmp_path_factory):
    """The data stage on the demo corpus with pipeline.yaml's tokenizer and transform."""
    from pipeline.demo_corpus import build

    tmp = tmp_path_factory.mktemp("demo")
    build(tmp / "corpus")
    run_ingest(tmp, [str(tmp / "corpus")], tmp / "documents", domain_field="domain")
    run_tokenizer(tmp, tmp / "documents", tmp / "tokenizer", vocab_size=4000)
    run_transform(tmp, tmp / "documents", tmp / "tokenizer", tmp / "out", sequence_length=128)
    return tmp / "out"


def test_demo_corpus_packs_train_windows_at_least_99_percent_full(demo_statistics):
    stats = json.loads((demo_statistics / "statistics" / "stats.json").read_text())
    train, evaluation = stats["splits"]["train"], stats["splits"]["eval"]
    assert train["packing_efficiency"] >= 0.99
    windows = _read(demo_statistics / "examples", "train")
    slots = sum(w["segment_ids"].size for w in windows)
    assert train["packing_efficiency"] == pytest.approx(
        sum(int((w["segment_ids"] != 0).sum()) for w in windows) / slots)
    # Eval windows stay within one domain and length bucket (for slicing), so each
    # group's last window is padded: less full, and every window is pure.
    assert evaluation["packing_efficiency"] < train["packing_efficiency"]
    assert MIXED_DOMAIN not in {w["domain"][0].decode()
                                for w in _read(demo_statistics / "examples", "eval")}
    assert train["unknown_token_rate"] == 0.0  # byte fallback: nothing is out of vocabulary
    assert len(train["domains"]) > 100
