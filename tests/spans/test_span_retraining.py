"""Scheduled retraining on data spans, through the CLI: a new span runs the data stage for
that span alone, the model trains on the chosen spans and warm-starts from the model in
service, and the golden set is measured on every run and never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.components.data_fixtures import document_texts
from tests.conftest import run_lmpipe, tiny_documents, tiny_raw_config, write_jsonl

pytestmark = pytest.mark.slow

PER_SPAN = 100  # three spans of the 360 documents; the last 20 are the golden set


def _run(config: Path, *sets: str) -> tuple[dict, str]:
    result = run_lmpipe("run", "--config", config, *(a for s in sets for a in ("--set", s)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return json.loads((config.parent / "root" / "latest_run.json").read_text()), result.stderr


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spans")
    documents = tiny_documents(copies=30)
    golden = documents[-20:]
    write_jsonl(tmp / "golden.jsonl", golden)
    for span in (1, 2):
        write_jsonl(tmp / "data" / f"day-{span}" / "part.jsonl",
                    documents[(span - 1) * PER_SPAN:span * PER_SPAN])
    raw = tiny_raw_config(tmp, tmp / "data")
    raw["data"]["inputs"] = [str(tmp / "data" / "day-{SPAN}")]
    raw["data"]["spans"] = {"latest": 2}
    raw["train"]["warm_start"] = "latest_pushed"
    raw["evaluation"]["golden_inputs"] = [str(tmp / "golden.jsonl")]
    config = tmp / "pipeline.yaml"
    config.write_text(yaml.safe_dump(raw))
    first = _run(config)
    # the golden set's documents also arrive in the new span: they are never trained on
    write_jsonl(tmp / "data" / "day-3" / "part.jsonl",
                documents[2 * PER_SPAN:3 * PER_SPAN] + golden[:5])
    second = _run(config)
    # a span of one domain only: the data validation stops the run before train
    drifted = [d for d in documents[:2 * PER_SPAN] if d["domain"] == documents[0]["domain"]]
    write_jsonl(tmp / "data" / "day-4" / "part.jsonl",
                [{**d, "text": d["text"] + " (again)"} for d in drifted])
    stopped = run_lmpipe("run", "--config", config)
    stopped_record = json.loads((tmp / "root" / "latest_run.json").read_text())
    return {"tmp": tmp, "config": config, "first": first, "second": second, "golden": golden,
            "stopped": (stopped, stopped_record)}


def test_a_run_trains_on_the_spans_found_and_records_them(history):
    record, stderr = history["first"]
    assert record["spans"] == [1, 2]
    assert "[ingest] span 1: ingested" in stderr and "[ingest] span 2: ingested" in stderr


def test_a_new_span_runs_the_data_stage_for_that_span_alone(history):
    record, stderr = history["second"]
    assert record["spans"] == [2, 3]
    for line in ("[ingest] span 1: cached", "[ingest] span 2: cached", "[ingest] span 3: ingested",
                 "[transform] span 2 (trained): cached", "[transform] span 3 (trained): transformed"):
        assert line in stderr
    examples = Path(record["components"]["transform"]["outputs"]["examples"])
    shards = {p.name.split("-")[1] for p in examples.glob("train-*.tfrecord")}
    assert shards == {"s00002", "s00003"}


def test_the_golden_set_is_measured_on_every_run_and_never_trained_on(history):
    for name in ("first", "second"):
        record, _ = history[name]
        assert record["metrics"]["golden_perplexity"] > 1.0
        assert record["metrics"]["golden_bits_per_byte"] > 0.0
    record, _ = history["second"]
    documents = Path(record["components"]["ingest"]["outputs"]["documents"])
    trained_on = set().union(*document_texts(documents).values())
    assert not trained_on & {d["text"] for d in history["golden"]}
    stats = json.loads((documents / "stats.json").read_text())
    assert stats["dropped"]["golden"] == 5


def test_retraining_warm_starts_and_the_card_and_runs_name_the_spans(history):
    record, _ = history["second"]
    model = Path(record["components"]["train"]["outputs"]["model"])
    summary = json.loads((model / "train_summary.json").read_text())
    assert summary["warm_start"]["version"] == 1
    card = json.loads((history["tmp"] / "serving" / "1" / "model_card.json").read_text())
    assert card["data_sources"]["spans"] == [1, 2]
    runs = run_lmpipe("runs", "--config", history["config"])
    assert runs.returncode == 0
    lines = runs.stdout.splitlines()
    assert "spans" in lines[0] and "golden" in lines[0]
    # newest first: the run the validation stopped (its spans chosen), then the two others
    assert " 3-4 " in lines[1] and " failed " in lines[1]
    assert " 2-3 " in lines[2] and " 1-2 " in lines[3]


def test_a_span_unlike_the_one_before_stops_the_run_before_train(history):
    result, record = history["stopped"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [l for l in result.stderr.splitlines() if l.startswith("lmpipe: error:")]
    assert "span 4" in line and "domain" in line
    statuses = {name: entry["status"] for name, entry in record["components"].items()}
    assert statuses["validate"] == "failed" and record["status"] == "failed"
    assert statuses.get("train", "skipped") != "executed"
    assert record["spans"] is None or record["spans"] == [3, 4]
