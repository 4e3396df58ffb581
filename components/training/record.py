"""A trained model's record (`train_summary.json`), wherever the model's layout keeps it.

A model artifact has it beside `saved_model/`, a pushed version inside its model card
(`training`). Warm start, distillation and the tokenizer import read it to learn how a
model was trained; none of them needs TensorFlow for that.
"""

from __future__ import annotations

import json
import os

from pipeline.errors import UsageError

SUMMARY_FILE = "train_summary.json"
CARD_FILE = "model_card.json"


def training_record(path: str) -> dict | None:
    """The training record kept beside a model.

    Args:
        path: a model artifact, its `saved_model/` or `model.keras`, or a serving version.

    Returns:
        The record, or None when there is none.
    """
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    candidates = [(os.path.join(directory, SUMMARY_FILE), None),
                  (os.path.join(directory, CARD_FILE), "training"),
                  (os.path.join(os.path.dirname(directory), SUMMARY_FILE), None)]
    for candidate, key in candidates:
        try:
            with open(candidate, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        data = data.get(key) if key and isinstance(data, dict) else data
        if isinstance(data, dict):
            return data
    return None


def check_tokenizer(source: str, expected: str) -> None:
    """Refuse to warm-start from a model trained with another tokenizer.

    Args:
        source: the model `train.warm_start` names.
        expected: the sha256 of this run's tokenizer.
    """
    recorded = ((training_record(source) or {}).get("tokenizer") or {}).get("sha256")
    if recorded is None:
        raise UsageError(f"train.warm_start {source}: cannot tell which tokenizer it was "
                         f"trained with (no {SUMMARY_FILE} or {CARD_FILE} recording it)")
    if recorded != expected:
        raise UsageError(f"train.warm_start {source}: trained with another tokenizer "
                         f"(sha256 {recorded[:12]}, this run's is {expected[:12]})")
