"""Which hyperparameters the trainer uses: the tune component's best ones, or config's.

The tune component's `hyperparameters` artifact holds `best.json`, a flat dict of
overrides: `train.learning_rate`, `model.hidden_dim`, or a bare name, which means a
`train.*` key (or, if `train` has no such field, a `model.*` one). Overrides go through
the same validation as the config file.
"""

from __future__ import annotations

import json
import os

from pipeline.core.configio import build, to_dict
from pipeline.core.errors import UsageError

BEST_FILE = "best.json"


def resolve(train_config, model_config, directory: str | None):
    """Apply the tuned overrides in `directory` (if any) to the config sections.

    Args:
        train_config: `TrainConfig` from the config.
        model_config: `ModelConfig` from the config.
        directory: the hyperparameters artifact directory, or None when tune did not run.

    Returns:
        (train_config, model_config, record); the record says where the values came from:
        {"source": "tune" | "config", "overrides": {dotted key: value}}.
    """
    if directory is None:
        return train_config, model_config, {"source": "config", "overrides": {}}
    overrides = _read_best(directory)
    sections = {"train": to_dict(train_config), "model": to_dict(model_config)}
    applied = {}
    for key, value in overrides.items():
        section, name = _locate(key, sections, directory)
        sections[section][name] = value
        applied[f"{section}.{name}"] = value
    train_config = build(type(train_config), sections["train"], "train")
    model_config = build(type(model_config), sections["model"], "model")
    return train_config, model_config, {"source": "tune", "overrides": applied}


def _read_best(directory: str) -> dict:
    path = os.path.join(directory, BEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            best = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: missing from the hyperparameters artifact") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: not valid JSON ({err.msg})") from None
    if not isinstance(best, dict):
        raise UsageError(f"{path}: expected a JSON object of hyperparameters")
    return best


def _locate(key: str, sections: dict, directory: str) -> tuple[str, str]:
    section, _, name = key.rpartition(".")
    candidates = [section] if section else ["train", "model"]
    for candidate in candidates:
        if candidate in sections and name in sections[candidate]:
            return candidate, name
    raise UsageError(f"{os.path.join(directory, BEST_FILE)}: unknown hyperparameter {key!r} "
                     "(expected a train.* or model.* key)")

