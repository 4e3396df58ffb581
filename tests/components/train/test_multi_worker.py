"""`train.strategy: multi_worker`: two worker processes on loopback train one model together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from pipeline.core.config import TrainConfig
from tests.components.test_train import _run_train
from tests.conftest import REPO
from tests.models import lm_data

TRAIN = {"steps": 12, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 2,
         "log_every": 4, "eval_batches": 3, "checkpoint_every": 4}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_together_to_identical_weights(tmp_path):
    lm_data.write_tokenizer(tmp_path / "tokenizer")
    lm_data.write_examples(tmp_path / "examples", tmp_path / "tokenizer")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline": {"root": str(tmp_path / "root")}, "data": {"inputs": ["unused.jsonl"]},
        "transform": {"sequence_length": lm_data.SEQUENCE_LENGTH},
        "model": {"num_layers": 1, "hidden_dim": 16, "num_heads": 2, "max_sequence_length": 64},
        "train": {**TRAIN, "strategy": "multi_worker"}}))
    cluster = {"chief": [f"localhost:{p}" for p in _free_ports(1)],
               "worker": [f"localhost:{p}" for p in _free_ports(1)]}
    output = tmp_path / "out" / "model"
    processes, logs = [], []
    for task in ({"type": "chief", "index": 0}, {"type": "worker", "index": 0}):
        env = {**lm_data.env(), "TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
        # Output to files: waiting on one process while the other fills a pipe nobody
        # reads would stall both (each waits for the other's gradients).
        logs.append((tmp_path / f"{task['type']}.out", tmp_path / f"{task['type']}.err"))
        with open(logs[-1][0], "w") as out, open(logs[-1][1], "w") as err:
            # Vertex gives every replica the same arguments, output paths included.
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "component", "train", "--config",
                 str(config), "--input", f"examples={tmp_path / 'examples'}",
                 "--input", f"tokenizer={tmp_path / 'tokenizer'}", "--output", f"model={output}"],
                cwd=REPO, env=env, stdout=out, stderr=err, text=True))
    try:
        for process in processes:
            process.wait(timeout=600)
    finally:
        for process in processes:
            process.kill()
    results = [(out.read_text(), err.read_text()) for out, err in logs]
    for process, (_, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr[-3000:]
    chief, worker = (json.loads(stdout)["model"]["properties"] for stdout, _ in results)
    assert chief["steps"] == worker["steps"] == 12
    assert chief["weights_sha256"] == worker["weights_sha256"]

    summary = json.loads((output / "train_summary.json").read_text())
    assert summary["strategy"] == {"name": "multi_worker", "workers": 2}
    assert summary["replicas"] == 2 and summary["weights_sha256"] == chief["weights_sha256"]
    assert (output / "saved_model" / "saved_model.pb").is_file()
    assert sorted(os.listdir(output.parent)) == ["model"], "the scratch directory is gone"
    assert "resuming" not in results[0][1]

    # The same global batch on one replica trains the same model, to float tolerance.
    single = tmp_path / "single"
    _run_train(tmp_path, single, train=TrainConfig(**{**TRAIN, "strategy": "default"}))
    reference = json.loads((single / "train_summary.json").read_text())
    assert summary["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-5)
    assert summary["final_train_loss"] == pytest.approx(reference["final_train_loss"], rel=1e-5)
