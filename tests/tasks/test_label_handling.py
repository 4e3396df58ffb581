"""Labels through the real components (ingest -> labels -> tokenizer -> transform, on Beam):
unlabeled lines, a label seen only in eval, and unknown labels at eval are left out of the
examples and counted, by reason and by label."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.ingest.cleaning import document_id, split_of
from tests.conftest import build_config, tiny_documents, tiny_raw_config, write_jsonl

SALT, FRACTION = "lmpipe", 0.2


def _text_in(split: str, stem: str) -> str:
    """A text that ingest puts into `split` (the split is a hash of the text)."""
    for i in range(1000):
        text = f"{stem} number {i} for the label tests."
        if split_of(document_id(text), SALT, FRACTION) == split:
            return text
    raise AssertionError("no text found")


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    from pipeline.local_runner import run_pipeline

    tmp_path = tmp_path_factory.mktemp("labels")
    records = [{"text": d["text"], "label": d["domain"], "source": "tiny"}
               for d in tiny_documents()]
    extra = [
        {"text": _text_in("train", "An unlabeled train line")},
        {"text": _text_in("eval", "An unlabeled eval line"), "label": None},
        {"text": _text_in("eval", "A blank label in eval"), "label": "  "},
        {"text": _text_in("eval", "A package only eval has"), "label": "rare"},
        {"text": _text_in("eval", "Another rare one"), "label": "rare"},
        {"text": _text_in("train", "A numeric train label"), "label": 7},
    ]
    write_jsonl(tmp_path / "corpus" / "labeled.jsonl", records + extra)
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["data"].update(label_field="label", domain_field="source", eval_fraction=FRACTION)
    raw["task"] = {"type": "classification"}
    record = run_pipeline(build_config(raw), until="transform")
    outputs = {name: entry["outputs"] for name, entry in record["components"].items()}
    splits = {split: [r for r in records + extra
                      if split_of(document_id(r["text"]), SALT, FRACTION) == split]
              for split in ("train", "eval")}
    return outputs, splits, record


def _read(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_the_vocabulary_holds_the_train_labels_and_counts_the_rest(transformed):
    outputs, splits, record = transformed
    assert [n for n, e in record["components"].items() if e["status"] == "executed"] == [
        "ingest", "labels", "tokenizer", "transform"]
    vocabulary = _read(outputs["labels"]["labels"] + "/vocabulary.json")
    assert vocabulary["labels"] == ["7", "json", "math", "os"]
    assert vocabulary["eval_only"] == ["rare"]
    # Missing, null and blank labels all count as unlabeled, per split.
    assert vocabulary["unlabeled"] == {"train": 1, "eval": 2}
    train_labels = [str(r["label"]) for r in splits["train"] if str(r.get("label", "")).strip()
                    and r.get("label") is not None]
    assert sum(vocabulary["counts"]["train"].values()) == len(train_labels)
    assert vocabulary["counts"]["eval"]["rare"] == 2
    with open(outputs["labels"]["labels"] + "/labels.txt", encoding="utf-8") as f:
        assert f.read().splitlines() == vocabulary["labels"]


def test_the_transform_leaves_out_and_counts_what_it_cannot_label(transformed):
    outputs, splits, _ = transformed
    statistics = _read(outputs["transform"]["statistics"] + "/stats.json")
    train, evaluation = statistics["splits"]["train"], statistics["splits"]["eval"]
    assert train["dropped"] == {"unlabeled": 1, "unknown_label": 0}
    assert evaluation["dropped"] == {"unlabeled": 2, "unknown_label": 2}
    assert evaluation["unknown_labels"] == {"rare": 2}
    for split, counted in (("train", train), ("eval", evaluation)):
        assert counted["documents"] == len(splits[split])
        assert counted["examples"] == len(splits[split]) - sum(counted["dropped"].values())


def test_the_examples_carry_the_label_ids_of_the_vocabulary(transformed):
    import tensorflow as tf

    outputs, splits, _ = transformed
    examples = outputs["transform"]["examples"]
    spec = _read(examples + "/feature_spec.json")
    assert spec["task"]["labels"] == ["7", "json", "math", "os"]
    assert spec["task"]["batch_features"] == ["label"]
    assert spec["features"]["label"] == {"dtype": "int64", "shape": [1]}
    ids = {label: i for i, label in enumerate(spec["task"]["labels"])}
    description = {"label": tf.io.FixedLenFeature([1], tf.int64),
                   "segment_ids": tf.io.FixedLenFeature([spec["sequence_length"]], tf.int64)}
    for split in ("train", "eval"):
        files = [f"{examples}/{name}" for name in spec["splits"][split]["shards"]]
        found = [tf.io.parse_single_example(r, description)
                 for r in tf.data.TFRecordDataset(files)]
        labels = sorted(int(f["label"].numpy()[0]) for f in found)
        expected = sorted(ids[str(r["label"])] for r in splits[split]
                          if r.get("label") is not None and str(r["label"]) in ids)
        assert labels == expected, split
        # One document per example: a single segment starting at position 0.
        segments = np.stack([f["segment_ids"].numpy() for f in found])
        assert set(np.unique(segments)) <= {0, 1} and (segments[:, 0] == 1).all()


def test_a_label_that_is_also_the_domain_keeps_every_value_past_max_domains(tmp_path):
    """`data.max_domains` folds slices, not labels: with the label field as the domain and
    one domain kept, every label still has its id while the examples' domain is the
    largest label or `(other)`."""
    import tensorflow as tf

    from components.shared.domains import OTHER_DOMAIN
    from pipeline.local_runner import run_pipeline

    records = [{"text": d["text"], "label": d["domain"]} for d in tiny_documents()]
    write_jsonl(tmp_path / "corpus" / "labeled.jsonl", records)
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["data"].update(label_field="label", domain_field="label", max_domains=1,
                       eval_fraction=FRACTION)
    raw["task"] = {"type": "classification"}
    record = run_pipeline(build_config(raw), until="transform")
    examples = record["components"]["transform"]["outputs"]["examples"]
    spec = _read(examples + "/feature_spec.json")
    assert spec["task"]["labels"] == ["json", "math", "os"]
    sizes = {label: sum(r["label"] == label for r in records) for label in spec["task"]["labels"]}
    largest = min(sizes, key=lambda label: (-sizes[label], label))
    description = {"label": tf.io.FixedLenFeature([1], tf.int64),
                   "domain": tf.io.FixedLenFeature([1], tf.string)}
    files = [f"{examples}/{name}" for split in ("train", "eval")
             for name in spec["splits"][split]["shards"]]
    found = [tf.io.parse_single_example(r, description) for r in tf.data.TFRecordDataset(files)]
    pairs = {(spec["task"]["labels"][int(f["label"][0])], f["domain"].numpy()[0].decode())
             for f in found}
    assert pairs == {(label, label if label == largest else OTHER_DOMAIN) for label in sizes}
    statistics = _read(record["components"]["transform"]["outputs"]["statistics"] + "/stats.json")
    assert set(statistics["splits"]["train"]["domains"]) == {largest, OTHER_DOMAIN}
