"""The label vocabulary's rules, without a runner: what counts as a label, and which exist."""

from __future__ import annotations

from components.labels import vocabulary
from pipeline.core.contracts import labels


def _doc(meta: dict, domain: str = "") -> dict:
    return {"text": "t", "domain": domain, "meta": meta}


def test_label_of_takes_strings_as_they_are_and_scalars_as_json():
    assert labels.label_of(_doc({"y": "os.path"}), "y", None) == "os.path"
    assert labels.label_of(_doc({"y": 3}), "y", None) == "3"
    assert labels.label_of(_doc({"y": True}), "y", None) == "true"
    assert labels.label_of(_doc({"y": 0.5}), "y", None) == "0.5"


def test_missing_null_blank_and_structured_labels_are_unlabeled():
    for meta in ({}, {"y": None}, {"y": ""}, {"y": "  "}, {"y": [1]}, {"y": {"a": 1}}):
        assert labels.label_of(_doc(meta), "y", None) is None, meta


def test_the_domain_field_can_be_the_label():
    assert labels.label_of(_doc({}, domain="email"), "package", "package") == "email"
    assert labels.label_of(_doc({}, domain=""), "package", "package") is None


def test_the_vocabulary_is_the_train_labels_sorted_and_counts_everything_else():
    train = [_doc({"y": y}) for y in ("b", "a", "b", None, "c")]
    evaluation = [_doc({"y": y}) for y in ("a", "z", None, None, "z")]
    total = vocabulary.split_counts(train, "train", "y", None)
    for key, value in vocabulary.split_counts(evaluation, "eval", "y", None).items():
        total[key] = total.get(key, 0) + value
    built = vocabulary.build_vocabulary(total, "y")
    assert built["labels"] == ["a", "b", "c"]
    assert labels.label_ids(built["labels"]) == {"a": 0, "b": 1, "c": 2}
    assert built["counts"] == {"train": {"a": 1, "b": 2, "c": 1}, "eval": {"a": 1, "z": 2}}
    assert built["unlabeled"] == {"train": 1, "eval": 2}
    assert built["eval_only"] == ["z"]
    assert built["field"] == "y"
