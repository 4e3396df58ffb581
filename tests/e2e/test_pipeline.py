"""The whole DAG on a tiny corpus through the CLI, as a user runs it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tests.conftest import run_lmpipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Run the tiny pipeline once; later tests read what it left behind."""
    import yaml

    from tests.conftest import tiny_documents, tiny_raw_config, write_jsonl

    tmp = tmp_path_factory.mktemp("e2e")
    corpus = tmp / "corpus"
    write_jsonl(corpus / "corpus.jsonl", tiny_documents())
    raw = tiny_raw_config(tmp, corpus)
    # A rate high enough that 30 steps of the tiny model clearly beat the unigram reference.
    raw["train"]["learning_rate"] = 3e-2
    config = tmp / "pipeline.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = run_lmpipe("run", "--config", config)
    return tmp, config, result


def _latest(tmp: Path) -> dict:
    return json.loads((tmp / "root" / "latest_run.json").read_text())


def test_run_executes_every_component_and_pushes(first_run):
    tmp, _, result = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    record = _latest(tmp)
    assert record["status"] == "succeeded"
    statuses = {name: c["status"] for name, c in record["components"].items()}
    assert statuses == {"ingest": "executed", "tokenizer": "executed", "transform": "executed",
                        "validate": "executed",
                        "tune": "skipped", "train": "executed", "evaluate": "executed",
                        "push": "executed"}
    metrics = record["metrics"]
    assert 1.0 < metrics["eval_perplexity"] < 300, metrics
    assert metrics["eval_bits_per_byte"] > 0
    assert 0.0 < metrics["eval_token_accuracy"] < 1.0
    assert metrics["blessed"] is True
    assert metrics["train_tokens_per_second"] > 0
    pushed = record["pushed_model"]
    assert pushed and os.path.isfile(os.path.join(pushed, "saved_model.pb"))
    assert Path(pushed).parent == tmp / "serving"
    assert f"pushed model: {pushed}" in result.stdout
    assert "Traceback" not in result.stderr


def test_metrics_are_consistent_with_each_other(first_run):
    tmp, _, _ = first_run
    record = _latest(tmp)
    evaluation = record["components"]["evaluate"]["outputs"]["evaluation"]
    metrics = json.loads(Path(evaluation, "metrics.json").read_text())["overall"]
    assert math.isclose(metrics["perplexity"], math.exp(metrics["mean_nll"]), rel_tol=1e-6)
    assert math.isclose(record["metrics"]["eval_perplexity"], metrics["perplexity"], rel_tol=1e-9)


def test_model_learned_beyond_a_unigram_model(first_run):
    tmp, _, _ = first_run
    record = _latest(tmp)
    evaluation = record["components"]["evaluate"]["outputs"]["evaluation"]
    metrics = json.loads(Path(evaluation, "metrics.json").read_text())["overall"]
    assert metrics["perplexity"] < metrics["unigram_perplexity"]


def test_rerun_is_fully_cached(first_run):
    tmp, config, _ = first_run
    before = _latest(tmp)
    result = run_lmpipe("run", "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    record = _latest(tmp)
    assert {c["status"] for n, c in record["components"].items() if n != "tune"} == {"cached"}
    assert record["metrics"] == before["metrics"]
    assert record["pushed_model"] == before["pushed_model"]
    assert sorted(os.listdir(tmp / "serving")) == ["1"]


def test_generate_from_the_serving_directory(first_run):
    tmp, _, _ = first_run
    result = run_lmpipe("generate", "--model", tmp / "serving", "--prompt", "Return the",
                        "--max-tokens", "8", "--temperature", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Return the")
    assert len(result.stdout.strip()) > len("Return the")


def test_runs_and_lineage_describe_the_run(first_run):
    tmp, config, _ = first_run
    runs = run_lmpipe("runs", "--config", config)
    assert runs.returncode == 0, runs.stderr
    assert len(runs.stdout.strip().splitlines()) >= 2
    model = _latest(tmp)["components"]["train"]["outputs"]["model"]
    lineage = run_lmpipe("lineage", model)
    assert lineage.returncode == 0, lineage.stderr
    for component in ("train", "transform", "tokenizer", "ingest"):
        assert f"made by {component}" in lineage.stdout
    assert "RawFiles" in lineage.stdout


def test_lineage_labels_only_the_raw_files_external(first_run):
    """Documents (under the tokenizer) and the tokenizer (under the model) are reached twice;
    the second time they are shown above, not passed off as inputs from outside."""
    tmp, _, _ = first_run
    outputs = {name: c["outputs"] for name, c in _latest(tmp)["components"].items()}
    lineage = run_lmpipe("lineage", outputs["train"]["model"])
    assert lineage.returncode == 0, lineage.stderr
    lines = [line.strip() for line in lineage.stdout.splitlines()]
    external = [lines[i - 1] for i, line in enumerate(lines) if "external input" in line]
    assert external == [f"RawFiles {tmp / 'corpus' / '*.jsonl'}"]
    for kind, component, uri in (("Documents", "ingest", outputs["ingest"]["documents"]),
                                 ("Tokenizer", "tokenizer", outputs["tokenizer"]["tokenizer"])):
        below = [lines[i + 1] for i, line in enumerate(lines) if line == f"{kind} {uri}"]
        assert len(below) == 2 and below[0].startswith(f"made by {component} in run ")
        assert below[1].startswith(f"(made by {component} in run ") and below[1].endswith(
            ", shown above)")


def test_lineage_of_the_pushed_version_reaches_ingest(first_run):
    tmp, _, _ = first_run
    record = _latest(tmp)
    pushed = record["pushed_model"]
    push = record["components"]["push"]["outputs"]["pushed"]
    lineage = run_lmpipe("lineage", pushed)
    assert lineage.returncode == 0, lineage.stderr
    lines = lineage.stdout.splitlines()
    assert lines[0] == f"Model {pushed}"
    assert lines[1].startswith("  serving version 1, written by push in run ")
    assert lines[1].endswith(f", recorded as PushedModel {push}")
    for component in ("push", "evaluate", "train", "transform", "tokenizer", "ingest"):
        assert f"made by {component} in run " in lineage.stdout, component
    assert f"Model {record['components']['train']['outputs']['model']}" in lineage.stdout
    external = [lines[i - 1].strip() for i, line in enumerate(lines) if "external input" in line]
    assert external == [f"RawFiles {tmp / 'corpus' / '*.jsonl'}"]
    in_file = run_lmpipe("lineage", os.path.join(pushed, "saved_model.pb"))
    assert in_file.returncode == 0 and in_file.stdout == lineage.stdout
