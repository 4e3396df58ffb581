"""The shared test harness: a tiny corpus, a tiny config, and the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parent.parent

# Twelve short documents in three domains; repeated with variations so that a tokenizer and
# a tiny model have something to learn in a few seconds.
_SENTENCES = {
    "math": ["Return the square root of x.", "Compute the greatest common divisor of a and b.",
             "Return the factorial of n as an integer.", "Round a number to the nearest integer."],
    "os": ["Return the current working directory.", "Remove the file at the given path.",
           "List the entries of a directory in arbitrary order.", "Create a directory named path."],
    "json": ["Serialize obj to a JSON formatted string.", "Deserialize a JSON document to an object.",
             "Encode Python objects as JSON text.", "Decode JSON text into Python objects."],
}


def tiny_documents(copies: int = 20) -> list[dict]:
    """Deterministic JSONL records: text and domain."""
    docs = []
    for i in range(copies):
        for domain, sentences in _SENTENCES.items():
            for j, sentence in enumerate(sentences):
                docs.append({"text": f"{sentence} Example {i} of {domain} number {j}.",
                             "domain": domain})
    return docs


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return path


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """A directory holding `corpus.jsonl` with 240 small documents."""
    write_jsonl(tmp_path / "corpus" / "corpus.jsonl", tiny_documents())
    return tmp_path / "corpus"


def tiny_raw_config(tmp_path: Path, corpus: Path) -> dict:
    """The raw (YAML-shaped) config of a pipeline that runs end to end in well under a minute."""
    return {
        "pipeline": {"name": "test", "root": str(tmp_path / "root"),
                     "beam_args": ["--direct_running_mode=in_memory"]},
        "data": {"inputs": [str(corpus / "*.jsonl")], "domain_field": "domain",
                 "eval_fraction": 0.2},
        "tokenizer": {"type": "bpe", "vocab_size": 300},
        "transform": {"sequence_length": 32},
        "model": {"num_layers": 1, "hidden_dim": 16, "num_heads": 2, "max_sequence_length": 64},
        "train": {"steps": 30, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 5,
                  "log_every": 10, "eval_batches": 4},
        "evaluation": {"batch_size": 8},
        "push": {"serving_dir": str(tmp_path / "serving")},
    }


@pytest.fixture
def tiny_config_file(tmp_path, tiny_corpus) -> Path:
    """A YAML config file for the tiny pipeline."""
    import yaml

    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(tiny_raw_config(tmp_path, tiny_corpus)))
    return path


def build_config(raw: dict):
    from pipeline.core.config import LmpipeConfig
    from pipeline.core.configio import build

    return build(LmpipeConfig, raw)


def run_lmpipe(*args: str, cwd: Path | None = None, timeout: float = 900,
               env_update: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the `lmpipe` CLI in a fresh process, as a user would (`env_update`: variables
    to set in its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env_update or {})},
    )


class PipelineStarted(Exception):
    """Raised by `beam_flags`'s stand-in Pipeline as soon as a step builds one."""


@pytest.fixture
def beam_flags(monkeypatch) -> list[list[str]]:
    """The flags of each Beam pipeline a step builds; building one raises `PipelineStarted`
    (nothing runs). A default is not a flag: `PipelineOptions` keeps only those it was
    built from."""
    import apache_beam as beam

    seen: list[list[str]] = []

    class Recording(beam.Pipeline):  # a Pipeline still: modules imported later type-hint it
        def __init__(self, *args, options=None, **kwargs):
            seen.append(list(options._flags))
            raise PipelineStarted

    monkeypatch.setattr(beam, "Pipeline", Recording)
    return seen
