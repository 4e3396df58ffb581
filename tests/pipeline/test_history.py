"""`lmpipe runs`: the retraining history table, read from a metadata store and the run's
artifacts (the e2e retraining test checks it on real runs)."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.core.artifacts import Artifact
from pipeline.history import format_runs, pushed_version, run_data
from pipeline.core.metadata import MetadataStore
from tests.conftest import run_lmpipe

ORDER = ["ingest", "tokenizer", "train", "evaluate", "push"]


def _write(path, data) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return os.path.dirname(path)


def _record_run(root, store, run_id: str, *, statuses: dict, metrics: dict, push: dict | None,
                splits: dict | None, status: str = "succeeded", spans=None) -> None:
    """One run as the local runner records it: executions in DAG order, then the summary."""
    store.start_run(run_id, {})
    components = {}
    for name in ORDER:
        outputs = {}
        if name == "ingest" and splits is not None:
            outputs["documents"] = _write(os.path.join(root, run_id, "documents", "stats.json"),
                                          {"splits": splits})
        if name == "push" and push is not None:
            outputs["pushed"] = _write(os.path.join(root, run_id, "pushed", "push.json"), push)
        store.record_execution(run_id, name, statuses[name], started=0.0, outputs={
            k: Artifact(type="Thing", uri=v, fingerprint=v) for k, v in outputs.items()})
        components[name] = {"status": statuses[name], "seconds": 0.0, "outputs": outputs}
    store.finish_run(run_id, status, {"run_id": run_id, "status": status, "components": components,
                                      "metrics": metrics, "pushed_model": None,
                                      "spans": spans})


SPLITS = {"train": {"documents": 283, "bytes": 18693}, "eval": {"documents": 77, "bytes": 5157}}
EXECUTED = dict.fromkeys(ORDER, "executed")
CACHED = dict.fromkeys(ORDER, "cached")


@pytest.fixture
def root(tmp_path):
    store = MetadataStore(str(tmp_path / "metadata.sqlite"))
    _record_run(tmp_path, store, "run-1", statuses=EXECUTED, splits=SPLITS,
                metrics={"eval_perplexity": 41.795891, "eval_bits_per_byte": 4.9059703,
                         "golden_perplexity": 44.4444, "blessed": True},
                push={"pushed": True, "version": 3, "uri": "/s/3"}, spans=[3, 4, 5])
    _record_run(tmp_path, store, "run-2", statuses={**CACHED, "evaluate": "executed",
                                                   "push": "executed"}, spans=[2, 5, 6],
                splits=SPLITS, metrics={"eval_perplexity": 41.795891,
                                        "eval_bits_per_byte": 4.9059703, "blessed": False},
                push={"pushed": False, "version": None, "uri": None})
    _record_run(tmp_path, store, "run-3", statuses=CACHED, splits=SPLITS,
                metrics={"eval_perplexity": 41.795891, "eval_bits_per_byte": 4.9059703,
                         "blessed": True},
                push={"pushed": True, "version": 3, "uri": "/s/3"})
    _record_run(tmp_path, store, "run-5", statuses=EXECUTED, splits=SPLITS,
                metrics={"eval_accuracy": 0.91234, "eval_macro_f1": 0.9, "blessed": True},
                push={"pushed": True, "version": 1, "uri": "/c/1"})
    _record_run(tmp_path, store, "run-6", statuses=EXECUTED, splits=SPLITS,
                metrics={"eval_bleu": 31.24, "eval_rouge_l": 0.5, "blessed": False},
                push={"pushed": False, "version": None, "uri": None})
    _record_run(tmp_path, store, "run-4", statuses={**dict.fromkeys(ORDER, "skipped"),
                                                   "ingest": "executed", "tokenizer": "failed"},
                splits=None, metrics={}, push=None, status="failed")
    store.close()
    return tmp_path


def test_runs_table_has_data_size_metrics_verdict_and_pushed_version(root):
    header, *lines = format_runs(str(root), limit=10).splitlines()
    assert header.split() == ["run", "started", "(UTC)", "status", "spans", "docs",
                              "train/eval", "data", "ppl", "golden", "bpb", "task", "blessed",
                              "pushed", "executed"]
    rows = {line.split()[0]: line.split()[3:] for line in lines}
    assert rows == {
        # data spans: a range, or the numbers; the golden set's perplexity beside the eval's
        "run-1": ["succeeded", "3-5", "283/77", "23.9kB", "41.80", "44.44", "4.906", "-", "yes",
                  "v3", "ingest,tokenizer,train,evaluate,push"],
        "run-2": ["succeeded", "2,5,6", "283/77", "23.9kB", "41.80", "-", "4.906", "-", "no", "-",
                  "evaluate,push"],
        "run-3": ["succeeded", "-", "283/77", "23.9kB", "41.80", "-", "4.906", "-", "yes", "(v3)",
                  "-"],
        "run-4": ["failed", "-", "-", "-", "-", "-", "-", "-", "-", "-", "ingest,failed:tokenizer"],
        # Downstream task runs: their headline metric instead of a perplexity.
        "run-5": ["succeeded", "-", "283/77", "23.9kB", "-", "-", "-", "acc=0.912", "yes", "v1",
                  "ingest,tokenizer,train,evaluate,push"],
        "run-6": ["succeeded", "-", "283/77", "23.9kB", "-", "-", "-", "bleu=31.2", "no", "-",
                  "ingest,tokenizer,train,evaluate,push"],
    }
    assert len(format_runs(str(root), limit=2).splitlines()) == 3


def test_data_size_and_pushed_version_tolerate_missing_artifacts(tmp_path):
    assert run_data({"ingest": {"outputs": {"documents": str(tmp_path / "gone")}}}) is None
    assert pushed_version({"push": {"status": "executed",
                                    "outputs": {"pushed": str(tmp_path / "gone")}}}) == "-"
    assert run_data({}) is None and pushed_version({}) == "-"
    odd = _write(str(tmp_path / "odd" / "stats.json"), {"splits": {"train": {"documents": 3}}})
    assert run_data({"ingest": {"outputs": {"documents": odd}}}) is None


def test_runs_on_a_root_without_runs_is_one_line_and_status_2(tmp_path):
    result = run_lmpipe("runs", "--root", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"lmpipe: error: {tmp_path}: no pipeline runs recorded "
                                     f"here ({tmp_path / 'metadata.sqlite'} missing)")


def test_runs_limit_must_be_positive(root):
    result = run_lmpipe("runs", "--root", root, "--limit", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "lmpipe: error: --limit 0: expected a positive number of runs"
    result = run_lmpipe("runs", "--root", root, "--limit", "1")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 2


def test_lineage_of_an_empty_path_is_a_usage_error(root):
    result = run_lmpipe("lineage", "", cwd=root)
    assert result.returncode == 2
    assert result.stderr.strip() == "lmpipe: error: lineage: the path is empty"
