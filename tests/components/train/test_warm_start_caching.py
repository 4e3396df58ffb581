"""`train.warm_start: latest_pushed` through the local runner: a new push changes train's
cache key, but pushing its own output does not, so a rerun stays cached."""

from __future__ import annotations

import json
from pathlib import Path

from tests.components.train import warm_start_pipeline
from tests.conftest import build_config


def _run(tmp_path, sequence_length: int) -> dict:
    from pipeline.local_runner import run_pipeline

    config = build_config({
        "pipeline": {"root": str(tmp_path / "root")}, "data": {"inputs": ["unused.jsonl"]},
        "transform": {"sequence_length": sequence_length},
        "model": {"num_layers": 1, "hidden_dim": 16, "num_heads": 2, "max_sequence_length": 64},
        "train": {"steps": 4, "batch_size": 8, "log_every": 2, "eval_batches": 2,
                  "warm_start": "latest_pushed"},
        "push": {"serving_dir": str(tmp_path / "serving")}})
    record = run_pipeline(config, nodes=warm_start_pipeline.nodes())
    return {name: entry["status"] for name, entry in record["components"].items()} | {
        "model": record["components"]["train"]["outputs"]["model"],
        "pushed": record["pushed_model"]}


def _warm_start(model_dir: str) -> dict:
    return json.loads((Path(model_dir) / "train_summary.json").read_text())["warm_start"]


def test_pushing_its_own_model_keeps_train_cached_and_new_data_warm_starts(tmp_path):
    first = _run(tmp_path, 32)
    assert first["train"] == "executed" and first["pushed"] == str(tmp_path / "serving" / "1")
    assert _warm_start(first["model"])["source"] is None  # nothing was pushed yet

    again = _run(tmp_path, 32)
    assert again["train"] == "cached" and again["model"] == first["model"]
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["1"]

    new_data = _run(tmp_path, 16)
    assert new_data["train"] == "executed"
    assert _warm_start(new_data["model"])["source"] == str(tmp_path / "serving" / "1")
    assert _warm_start(new_data["model"])["loaded"] == "saved_model"
    assert new_data["pushed"] == str(tmp_path / "serving" / "2")

    assert _run(tmp_path, 16)["train"] == "cached"
