"""`lmpipe tune`, the tuned values reaching `train` through the local runner, a killed
sweep resuming, and a chief with two workers sharing a sweep on loopback (and going on
when one of them dies)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, build_config, run_lmpipe
from tests.tuning import helpers

TUNING = {"enabled": False, "max_trials": 2, "tokens_per_trial": 4000,
          "space": {"learning_rate": {"min": 1e-3, "max": 1e-2}, "batch_size": [4, 16]}}


@pytest.mark.slow
def test_lmpipe_tune_then_train_takes_the_best_values(tmp_path, tiny_corpus):
    from pipeline.local_runner import run_pipeline
    from tests.conftest import tiny_raw_config
    from pipeline.tune_command import cached_inputs

    raw = {**tiny_raw_config(tmp_path, tiny_corpus), "tuning": TUNING}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_lmpipe("tune", "--config", path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"trial 1/2 \[tuner0\]: train\.learning_rate=[0-9.e-]+, "
                     r"train\.batch_size=(4|16)", result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["trial", "status", "train.learning_rate",
                                    "train.batch_size", "eval_loss"]
    assert [line.split()[:2] for line in lines[1:3]] == [["1", "completed"], ["2", "completed"]]
    artifact = Path(lines[-1].removeprefix("hyperparameters: "))
    best = json.loads((artifact / "best.json").read_text())

    tuned = build_config({**raw, "tuning": {**TUNING, "enabled": True}})
    # A worker of a parallel sweep finds the same upstream results without the lock.
    upstream = cached_inputs(tuned, "tune", timeout=0)
    record = run_pipeline(tuned, until="train")
    assert record["components"]["tune"]["status"] == "cached"
    assert record["components"]["tune"]["outputs"]["hyperparameters"] == str(artifact)
    assert upstream == {"examples": record["components"]["transform"]["outputs"]["examples"],
                        "tokenizer": record["components"]["tokenizer"]["outputs"]["tokenizer"]}
    summary = _train_summary(record)
    assert summary["hyperparameters"]["source"] == "tune"
    assert summary["hyperparameters"]["overrides"] == best
    assert summary["hyperparameters"]["train"]["learning_rate"] == best["train.learning_rate"]
    # The tuned batch size trains on the configured run's tokens (30 steps x 8 rows).
    assert summary["tokens_seen"] == pytest.approx(30 * 8 * 32, abs=best["train.batch_size"] * 32)

    record = run_pipeline(build_config(raw), until="train")
    assert record["components"]["tune"]["status"] == "skipped"
    summary = _train_summary(record)
    assert summary["hyperparameters"]["source"] == "config"
    assert summary["hyperparameters"]["train"]["learning_rate"] == raw["train"]["learning_rate"]


def _train_summary(record: dict) -> dict:
    model = record["components"]["train"]["outputs"]["model"]
    return json.loads((Path(model) / "train_summary.json").read_text())


def _component_command(config: Path, examples: Path, tokenizer: Path, out: Path) -> list:
    return [sys.executable, "-m", "pipeline.cli", "component", "tune", "--config", str(config),
            "--input", f"examples={examples}", "--input", f"tokenizer={tokenizer}",
            "--output", f"hyperparameters={out}"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KERASTUNER_", "TF_CONFIG", "CLUSTER_SPEC"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


@pytest.mark.slow
def test_killed_sweep_resumes_where_it_stopped(tmp_path):
    examples, tokenizer = helpers.write_inputs(tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(helpers.raw_config(tmp_path, max_trials=3)))
    command = _component_command(path, examples, tokenizer, tmp_path / "out")
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:
        if "trial 2/3 [" in line:  # trial 1 is recorded, trial 2 under way: kill it
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    first = helpers.records(tmp_path / "root")
    assert list(first) == ["0"] and first["0"]["status"] == "completed"

    rerun = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "trial 1/3 [" not in rerun.stderr
    assert "trial 2/3 [" in rerun.stderr and "trial 3/3 [" in rerun.stderr
    after = helpers.records(tmp_path / "root")
    assert sorted(after) == ["0", "1", "2"] and after["0"] == first["0"]
    rows = helpers.read_table(tmp_path / "out" / "trials.csv")
    assert [r["trial"] for r in rows] == ["1", "2", "3"]
    assert all(r["status"] == "completed" for r in rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_whose_chief_never_answers_stops_with_one_line(tmp_path):
    """KerasTuner's client would wait an hour and end in a gRPC traceback; the worker
    waits `tuning.chief_wait_seconds` and names the address it asked."""
    examples, tokenizer = helpers.write_inputs(tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(helpers.raw_config(tmp_path, chief_wait_seconds=2)))
    port = _free_port()  # nobody listens there
    result = subprocess.run(
        _component_command(path, examples, tokenizer, tmp_path / "out"), cwd=REPO,
        env=_env(KERASTUNER_TUNER_ID="worker0", KERASTUNER_ORACLE_IP="127.0.0.1",
                 KERASTUNER_ORACLE_PORT=str(port)),
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"lmpipe: error: no chief answered at 127.0.0.1:{port} within 2 s "
                    "(tuning.chief_wait_seconds): start the chief (KERASTUNER_TUNER_ID=chief) "
                    "or fix KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT")
    assert "Traceback" not in result.stderr and "RpcError" not in result.stderr


@pytest.mark.slow
def test_chief_and_two_workers_share_the_trials(tmp_path):
    examples, tokenizer = helpers.write_inputs(tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(helpers.raw_config(tmp_path, max_trials=6,
                                                      tokens_per_trial=3000)))
    cluster = {"chief": [f"127.0.0.1:{_free_port()}"],
               "worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    processes = {}
    for kind, index in (("chief", 0), ("worker", 0), ("worker", 1)):
        # As on Vertex AI: only TF_CONFIG, from which the KerasTuner variables are derived.
        tf_config = json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})
        out = tmp_path / f"out-{kind}{index}"
        # stderr to a file: a worker blocked on a full pipe while the chief is waited on
        # would hold the sweep.
        with open(tmp_path / f"{kind}{index}.log", "w") as log:
            processes[f"{kind}{index}"] = subprocess.Popen(
                _component_command(path, examples, tokenizer, out), cwd=REPO,
                env=_env(TF_CONFIG=tf_config), stdout=subprocess.DEVNULL, stderr=log)
    for process in processes.values():
        process.wait(timeout=600)
    errors = {name: (tmp_path / f"{name}.log").read_text() for name in processes}
    for name, process in processes.items():
        assert process.returncode == 0, errors[name]
    started = {name: re.findall(r"trial (\d)/6 \[", text) for name, text in errors.items()}
    assert started["chief0"] == []  # the chief only serves the oracle
    ran = started["worker0"] + started["worker1"]
    assert sorted(ran) == ["1", "2", "3", "4", "5", "6"]  # each trial once
    assert started["worker0"] and started["worker1"]  # shared out
    rows = helpers.read_table(tmp_path / "out-chief0" / "trials.csv")
    assert len(rows) == 6 and all(r["status"] == "completed" for r in rows)
    assert {r["tuner"] for r in rows} == {"worker0", "worker1"}
    for name in ("worker0", "worker1"):
        assert sorted(r["trial"] for r in rows if r["tuner"] == name) == sorted(started[name])
        assert not any((tmp_path / f"out-{name}").iterdir())  # workers write no artifact
    assert (tmp_path / "out-chief0" / "best.json").exists()


@pytest.mark.slow
def test_a_trial_of_a_worker_that_died_is_run_by_another_and_the_chief_ends(tmp_path):
    import time

    examples, tokenizer = helpers.write_inputs(tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(helpers.raw_config(
        tmp_path, max_trials=3, tokens_per_trial=30000, reclaim_after_seconds=10)))
    port = _free_port()
    processes, logs = {}, {}
    for name in ("chief", "worker0", "worker1"):
        logs[name] = tmp_path / f"{name}.log"
        env = _env(KERASTUNER_TUNER_ID=name, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port))
        with open(logs[name], "w") as log:
            processes[name] = subprocess.Popen(
                _component_command(path, examples, tokenizer, tmp_path / f"out-{name}"),
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 300
    while not (lost := re.findall(r"trial (\d)/3 \[worker0\]", logs["worker0"].read_text())):
        assert time.time() < deadline and processes["worker0"].poll() is None, \
            logs["worker0"].read_text()[-2000:]
        time.sleep(0.2)
    processes["worker0"].kill()  # dies in the middle of its first trial
    for name in ("chief", "worker1"):
        assert processes[name].wait(timeout=600) == 0, logs[name].read_text()[-3000:]
    chief = logs["chief"].read_text()
    assert f"trial {lost[0]} of worker0 lost" in chief
    rows = helpers.read_table(tmp_path / "out-chief" / "trials.csv")
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows)
    assert {r["tuner"] for r in rows} == {"worker1"}  # the lost trial too, from its start
    assert re.findall(r"trial (\d)/3 \[worker1\]", logs["worker1"].read_text()).count(lost[0]) == 1
