"""`lmpipe` stopped from outside: SIGTERM (what `timeout`, `kill`, systemd and schedulers
send) is one line, exit status 143, the run recorded as failed and nothing published for
the step; a reader that closes the pipe (`| head`) ends it quietly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO, tiny_raw_config
from tests.models.lm_data import env


@pytest.mark.slow
def test_sigterm_during_training_records_a_failed_run_and_publishes_no_model(tmp_path,
                                                                             tiny_corpus):
    raw = tiny_raw_config(tmp_path, tiny_corpus)
    raw["train"]["steps"] = 100_000  # still training when the signal comes
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config",
                                str(config)], cwd=REPO, env=env(), text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    for line in process.stderr:
        assert time.time() < deadline, "training never started"
        if "step " in line and "loss" in line:  # the trainer's first progress line
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1] == "lmpipe: error: terminated"
    assert "Traceback" not in rest

    root = tmp_path / "root"
    record = json.loads((root / "latest_run.json").read_text())
    assert record["status"] == "failed"
    assert record["components"]["train"]["status"] == "failed"
    assert record["components"]["transform"]["status"] == "executed"
    assert not [p for p in (root / "train").iterdir() if not p.name.startswith(".")]
    listed = subprocess.run([sys.executable, "-m", "pipeline.cli", "runs", "--root", str(root)],
                            cwd=REPO, env=env(), text=True, capture_output=True, check=True)
    assert record["run_id"] in listed.stdout and " failed " in listed.stdout


def test_a_closed_pipe_ends_the_command_quietly(tiny_config_file):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", "config", "--config",
                                 str(tiny_config_file)], cwd=REPO, env=env(), text=True,
                                stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")
