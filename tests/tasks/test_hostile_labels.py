"""Labels a careless export writes: a stray line break, a single class, unicode. The real
ingest and labels components on Beam, stopped after `labels`."""

from __future__ import annotations

import pytest

from tests.conftest import build_config, run_lmpipe, tiny_documents, tiny_raw_config, write_jsonl


def _records(label_of) -> list[dict]:
    return [{"text": d["text"], "label": label_of(i, d["domain"])}
            for i, d in enumerate(tiny_documents(copies=4))]


def _config(tmp_path, label_of):
    write_jsonl(tmp_path / "corpus" / "c.jsonl", _records(label_of))
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["data"]["label_field"] = "label"
    raw["task"] = {"type": "classification"}
    return raw


def _labels(tmp_path, label_of) -> dict:
    from pipeline.local_runner import run_pipeline

    record = run_pipeline(build_config(_config(tmp_path, label_of)), until="labels")
    return record["components"]["labels"]["outputs"]["labels"]


def _train_count(label_of, label: str) -> int:
    """How many train documents carry `label` (the split is a hash of the text)."""
    from components.ingest.cleaning import document_id, split_of

    return sum(1 for r in _records(label_of)
               if r["label"] == label and split_of(document_id(r["text"]), "lmpipe", 0.2) == "train")


@pytest.mark.parametrize("label", ["json\n", "json\r\n", "js\u2028on"])
def test_a_label_with_a_line_break_stops_the_run_with_one_line(tmp_path, label):
    import yaml

    path = tmp_path / "c.yaml"
    def label_of(i, domain):
        return label if domain == "json" and i % 2 else domain

    raw = _config(tmp_path, label_of)
    path.write_text(yaml.safe_dump(raw))
    result = run_lmpipe("run", "--config", path, "--until", "labels")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"lmpipe: error: labels: data.label_field 'label': the label {label!r} holds a line "
        f"break ({_train_count(label_of, label)} train documents); labels are one line each, "
        "clean the field in the data")
    assert "Traceback" not in result.stderr


def test_unicode_and_number_labels_are_one_line_each_in_labels_txt(tmp_path):
    names = {"json": "日本語 ✓", "math": 3, "os": True}
    labels = _labels(tmp_path, lambda i, domain: names[domain])
    with open(f"{labels}/labels.txt", encoding="utf-8") as f:
        assert f.read().splitlines() == ["3", "true", "日本語 ✓"]


def test_one_train_class_stops_the_run(tmp_path):
    from pipeline.core.errors import UsageError
    from pipeline.local_runner import ComponentFailed

    with pytest.raises((UsageError, ComponentFailed), match=r"the train split has 1 distinct "
                       r"label\(s\) \(\['only'\]\); classification needs at least 2"):
        _labels(tmp_path, lambda i, domain: "only")
