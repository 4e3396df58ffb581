"""Inputs in the producers' layouts and a train-component call that can take a teacher."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from pipeline.core.artifacts import Artifact
from pipeline.core.config import ModelConfig, TaskConfig, TrainConfig
from tests.conftest import tiny_documents
from tests.models import lm_data

STUDENT = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=64)
TEACHER = ModelConfig(num_layers=2, hidden_dim=32, num_heads=2, max_sequence_length=64)
# No checkpoints: these runs never resume, and writing them costs time.
TRAIN = TrainConfig(steps=30, batch_size=8, learning_rate=3e-3, warmup_steps=5, log_every=10,
                    eval_batches=20, checkpoint_every=None)


def artifact(kind: str, path) -> Artifact:
    """An input artifact as the runner hands it over."""
    return Artifact(type=kind, uri=str(path), fingerprint=f"fp-{kind}")


def write_inputs(root: Path, vocab_size: int = lm_data.VOCAB_SIZE) -> dict[str, list[dict]]:
    """A tokenizer, packed examples (feature spec listing its features, as the transform
    writes it) and a documents artifact (every fifth tiny document is eval, as in the
    examples) under `root`.

    Returns:
        split -> the example records written.
    """
    lm_data.write_tokenizer(root / "tokenizer", vocab_size=vocab_size)
    records = lm_data.write_examples(root / "examples", root / "tokenizer")
    spec_path = root / "examples" / "feature_spec.json"
    spec = json.loads(spec_path.read_text())
    length = spec["sequence_length"]
    spec["features"] = {"token_ids": {"dtype": "int64", "shape": [length]},
                        "segment_ids": {"dtype": "int64", "shape": [length]},
                        "num_bytes": {"dtype": "int64", "shape": [1]},
                        "domain": {"dtype": "string", "shape": [1]}}
    spec_path.write_text(json.dumps(spec))
    documents = root / "documents"
    documents.mkdir(parents=True, exist_ok=True)
    name = "eval-00000-of-00001.jsonl.gz"
    lines = "".join(json.dumps({**d, "meta": {}}) + "\n" for d in tiny_documents()[::5])
    (documents / name).write_bytes(gzip.compress(lines.encode("utf-8"), mtime=0))
    (documents / "stats.json").write_text(json.dumps(
        {"splits": {"train": {"shards": []}, "eval": {"shards": [name]}}}))
    return records


def run_train(root: Path, out: Path, model: ModelConfig = STUDENT, train: TrainConfig = TRAIN,
              teacher: Artifact | None = None, work_dir: Path | None = None,
              warm_start: Artifact | None = None) -> dict:
    """The train component on `root`'s inputs (checkpoints in `work_dir`, if given; starting
    from the resolved `warm_start` input, if given); returns the written train summary."""
    from components import train as component
    from pipeline.local_runner import Runtime

    out.mkdir(parents=True, exist_ok=True)
    inputs = {"examples": artifact("Examples", root / "examples"),
              "tokenizer": artifact("Tokenizer", root / "tokenizer"),
              "hyperparameters": None, "warm_start": warm_start, "teacher": teacher}
    runtime = Runtime(run_id="test", root=str(root), work_dir=work_dir and str(work_dir))
    component.run(inputs, {"model": str(out)}, runtime, model=model, task=TaskConfig(),
                  train=train)
    return json.loads((out / "train_summary.json").read_text())
