"""The SQLite metadata store: runs, executions, lineage, and the commands that read it."""

from __future__ import annotations

import json
import os
import sqlite3

from pipeline.history import format_lineage, format_runs
from pipeline.local_runner import run_pipeline
from tests.conftest import build_config, run_lmpipe
from tests.pipeline import fake_components


def _run(tmp_path, seed=0):
    config = build_config({"pipeline": {"root": str(tmp_path / "root")},
                           "data": {"inputs": ["unused"]}, "train": {"seed": seed}})
    return run_pipeline(config, nodes=fake_components.nodes())


def test_store_records_runs_executions_and_events(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path)
    db = sqlite3.connect(tmp_path / "root" / "metadata.sqlite")
    runs = db.execute("SELECT id, status FROM runs ORDER BY started").fetchall()
    assert runs == [(first["run_id"], "succeeded"), (second["run_id"], "succeeded")]
    statuses = db.execute("SELECT component, status FROM executions WHERE run_id = ? ORDER BY id",
                          (second["run_id"],)).fetchall()
    assert statuses == [("alpha", "cached"), ("beta", "cached"), ("gamma", "cached")]
    # gamma has two outputs and one input, and artifacts are stored once however often used.
    assert db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 4
    events = db.execute(
        "SELECT e.kind, e.name FROM events e JOIN executions x ON x.id = e.execution_id "
        "WHERE x.run_id = ? AND x.component = 'gamma' ORDER BY e.kind, e.name",
        (first["run_id"],)).fetchall()
    assert events == [("input", "thing"), ("output", "extra"), ("output", "out")]


def test_lineage_walks_back_to_the_first_component(tmp_path):
    record = _run(tmp_path, seed=3)
    out = record["components"]["gamma"]["outputs"]["out"]
    text = format_lineage(os.path.join(out, "value.txt"))
    lines = text.splitlines()
    assert lines[0] == f"Thing {out}"
    assert "made by gamma" in lines[1]
    assert 'config train: {' in text and '"seed": 3' in text
    assert "made by beta" in text and "made by alpha" in text
    assert text.index("made by beta") < text.index("made by alpha")


def test_runs_lists_newest_first_with_what_executed(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path, seed=4)
    table = format_runs(str(tmp_path / "root"), limit=10).splitlines()
    assert table[1].startswith(second["run_id"]) and table[1].rstrip().endswith("gamma")
    assert table[2].startswith(first["run_id"]) and table[2].rstrip().endswith("alpha,beta,gamma")


def test_lineage_cli_outside_any_root_is_a_usage_error(tmp_path):
    (tmp_path / "loose.txt").write_text("x")
    result = run_lmpipe("lineage", tmp_path / "loose.txt")
    assert result.returncode == 2
    assert "no metadata.sqlite" in result.stderr and "Traceback" not in result.stderr


def test_runs_cli_on_a_root_without_runs_is_a_usage_error(tmp_path):
    result = run_lmpipe("runs", "--root", tmp_path)
    assert result.returncode == 2
    assert "no pipeline runs recorded" in result.stderr


def test_run_record_survives_in_the_store(tmp_path):
    record = _run(tmp_path)
    db = sqlite3.connect(tmp_path / "root" / "metadata.sqlite")
    stored = json.loads(db.execute("SELECT summary FROM runs").fetchone()[0])
    assert stored == record


def test_an_outside_input_changed_in_place_is_described_as_it_is_now(tmp_path):
    """A serving version wiped and pushed to again is the same URI with new content: the
    store's row follows the content (its run id), and an unchanged input keeps its row."""
    from pipeline.core.artifacts import Artifact
    from pipeline.core.metadata import MetadataStore

    store = MetadataStore(str(tmp_path / "metadata.sqlite"))
    store.start_run("r1", {})

    def consume(run_id, fingerprint):
        baseline = Artifact(type="Model", uri="/serving/1", fingerprint=fingerprint,
                            properties={"run_id": run_id})
        store.record_execution("r1", "evaluate", "executed", started=0.0,
                               inputs={"baseline": baseline})

    consume("old-run", "aaa")
    consume("old-run", "aaa")
    consume("new-run", "bbb")
    rows = store.db.execute("SELECT fingerprint, properties FROM artifacts").fetchall()
    assert [(r["fingerprint"], json.loads(r["properties"])) for r in rows] == [
        ("bbb", {"run_id": "new-run"})]
    events = store.db.execute("SELECT COUNT(*) FROM events WHERE artifact_id = 1").fetchone()[0]
    assert events == 3
