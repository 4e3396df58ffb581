"""Shared pieces of the tuning tests: tiny inputs, configs and in-process sweeps."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import build_config, tiny_raw_config

SEQUENCE_LENGTH = 32  # tests.models.lm_data's windows


def write_inputs(directory: Path) -> tuple[Path, Path]:
    """A tokenizer artifact and a packed examples artifact of the shared tiny corpus."""
    from tests.models import lm_data

    lm_data.write_tokenizer(directory / "tokenizer")
    lm_data.write_examples(directory / "examples", directory / "tokenizer")
    return directory / "examples", directory / "tokenizer"


def raw_config(tmp_path: Path, **tuning) -> dict:
    """The tiny pipeline config with a tuning section (`tuning` keys override)."""
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["tuning"] = {"enabled": True, "max_trials": 3, "tokens_per_trial": 6000,
                     "space": {"learning_rate": {"min": 1e-3, "max": 1e-2},
                               "batch_size": [4, 8]}, **tuning}
    return raw


def config(tmp_path: Path, **tuning):
    """`raw_config` built into an `LmpipeConfig`."""
    return build_config(raw_config(tmp_path, **tuning))


def run_tune(config, examples: Path, tokenizer: Path, output: Path) -> dict:
    """Run the tune component in this process (as the local runner would)."""
    from components import tune
    from pipeline.core.artifacts import Artifact
    from pipeline.local_runner import Runtime

    output.mkdir(parents=True, exist_ok=True)
    inputs = {"examples": Artifact("Examples", str(examples), "examples"),
              "tokenizer": Artifact("Tokenizer", str(tokenizer), "tokenizer")}
    runtime = Runtime(run_id="test", root=config.pipeline.root)
    return tune.run(inputs, {"hyperparameters": str(output)}, runtime,
                    **tune.SPEC.sections(config))


def records(root: Path) -> dict[str, dict]:
    """Trial id -> its `lmpipe_trial.json`, over every sweep under a pipeline root."""
    found = {}
    for path in sorted(Path(root).glob("tune/.sweeps/*/trial_*/lmpipe_trial.json")):
        record = json.loads(path.read_text())
        found[record["trial_id"]] = record
    return found


def read_table(path: Path) -> list[dict]:
    """The rows of a `trials.csv` (strings)."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
