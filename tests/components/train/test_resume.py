"""A training run killed with SIGKILL and started again with the same command resumes from
its last checkpoint and ends where an uninterrupted run ends, dropout included: the same loss
at every logged step and the same weights, to the bit."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_raw_config
from tests.models.lm_data import env

STEPS = 800
EVERY = 100


def _config(tmp_path: Path, corpus: Path, name: str) -> Path:
    raw = tiny_raw_config(tmp_path / name, corpus)
    raw["train"].update({"steps": STEPS, "checkpoint_every": EVERY, "log_every": EVERY,
                         "eval_every": 400, "keep_checkpoints": 2})
    raw["model"]["dropout"] = 0.1  # pipeline.yaml's: the masks must resume too
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _command(config: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config),
            "--until", "train"]


def _latest_checkpoint(root: Path) -> int:
    steps = [0]
    for index in root.glob("train/.work/*/checkpoints/checkpoint"):
        text = index.read_text()
        steps += [int(line.split("ckpt-")[1].rstrip('"')) for line in text.splitlines()
                  if line.startswith("model_checkpoint_path")]
    return max(steps)


def _model(root: Path) -> Path:
    record = json.loads((root / "latest_run.json").read_text())
    return Path(record["components"]["train"]["outputs"]["model"])


def _summary(root: Path) -> dict:
    return json.loads((_model(root) / "train_summary.json").read_text())


def _log(root: Path) -> list[dict]:
    with open(_model(root) / "train_log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_where_an_uninterrupted_run_ends(tmp_path, tiny_corpus):
    killed = _config(tmp_path, tiny_corpus, "killed")
    root = tmp_path / "killed" / "root"
    # stderr to a file, not a pipe nobody reads while polling: a full pipe would stall the
    # run before its first checkpoint.
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - closed after the kill
    process = subprocess.Popen(_command(killed), cwd=REPO, env=env(), text=True,
                               stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 600
    while _latest_checkpoint(root) < 3 * EVERY and process.poll() is None:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved = _latest_checkpoint(root)
    assert 3 * EVERY <= saved < STEPS

    again = subprocess.run(_command(killed), cwd=REPO, env=env(), text=True,
                           capture_output=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed_from = [line for line in again.stderr.splitlines() if "resuming from" in line]
    assert len(resumed_from) == 1 and f"at step {saved} of {STEPS}" in resumed_from[0]
    resumed = _summary(root)
    assert resumed["resumed_from_step"] == saved and resumed["steps"] == STEPS
    assert not list(root.glob("train/.work/*")), "checkpoints are removed once published"

    reference = _config(tmp_path, tiny_corpus, "reference")
    whole = subprocess.run(_command(reference), cwd=REPO, env=env(), text=True,
                           capture_output=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-3000:]
    uninterrupted = _summary(tmp_path / "reference" / "root")
    assert uninterrupted["resumed_from_step"] is None
    # Deterministic ops, restored data position, dropout masks drawn from (seed, step): the
    # very same losses at every logged step, eval losses and weights.
    rows, reference_rows = _log(root), _log(tmp_path / "reference" / "root")
    assert [(r["step"], r["loss"], r["eval_loss"]) for r in rows] == [
        (r["step"], r["loss"], r["eval_loss"]) for r in reference_rows]
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    assert resumed["eval_loss"] == uninterrupted["eval_loss"]
    # The curve spans both sessions, each step once: rows the killed session logged after
    # its last checkpoint were dropped when the run resumed.
    assert [int(r["step"]) for r in rows if r["loss"]] == list(range(EVERY, STEPS + 1, EVERY))
    assert [int(r["step"]) for r in rows if r["eval_loss"]] == [400, 800]
