"""The trainer's `run_fn` (TFX style): examples + tokenizer -> a trained, exported model.

Model artifact layout (written by the chief only; other workers write nothing):
    saved_model/         the servable SavedModel (`models/export.py`), float32
    saved_model_int8/    the same, int8 (only with `train.quantize` int8 or int8_weights)
    model.keras          the Keras model (architecture + weights), float32
    train_summary.json   what was trained, with which resolved hyperparameters, from which
                         warm start and tokenizer, and how fast
    train_log.csv        step, loss, learning_rate, grad_norm, tokens_per_second, mfu,
                         elapsed_seconds, eval_loss
    logs/                TensorBoard logs (`train/`, `eval/`)

With `paths.work` (the runner's `work_dir`, a stable directory for this execution),
checkpoints and the logs live there while training, so a killed run started again with
the same command resumes; the runner deletes it once the execution is published.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from typing import Callable

from components.train import data, hparams
from components.train.monitor import CSV_FILE
from pipeline.core.contracts.tokenizer import tokenizer_digest
from pipeline.core.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Paths:
    """Where a run reads and writes.

    Attributes:
        examples: the transform component's examples artifact.
        tokenizer: the tokenizer artifact.
        hyperparameters: the tune component's artifact, or None.
        output: the (empty) model artifact directory.
        work: a directory that survives restarts of this execution (None: no resume).
        cache: where measurements shared by runs are kept (the matmul peak), or None.
    """

    examples: str
    tokenizer: str
    hyperparameters: str | None
    output: str
    work: str | None = None
    cache: str | None = None


def run_fn(paths: Paths, model_config, task_config, train_config, log: Callable[[str], None],
           warm_start=None, teacher=None) -> dict:
    """Train the configured model and write the model artifact.

    Args:
        paths: inputs, output and working directories.
        model_config: `ModelConfig`.
        task_config: `TaskConfig`.
        train_config: `TrainConfig`.
        log: progress lines (stderr).
        warm_start: the resolved `train.warm_start` artifact (`pipeline/core/contracts/model.py` `resolve`), or None.
        teacher: the resolved `train.distill.teacher` artifact (`distill.resolve`), or None.

    Returns:
        The train summary (also written to `train_summary.json` by the chief).
    """
    train_config, model_config, source = hparams.resolve(train_config, model_config,
                                                         paths.hyperparameters)
    spec = data.read_feature_spec(paths.examples)
    if spec.sequence_length > model_config.max_sequence_length:
        raise UsageError(f"examples have sequence_length {spec.sequence_length}, above "
                         f"model.max_sequence_length {model_config.max_sequence_length}")
    budget = plan_budget(train_config, spec.sequence_length)
    train_files = data.split_files(paths.examples, "train")
    if not train_files:
        raise UsageError(f"{paths.examples}: no train-*.tfrecord shards")

    from components.train import session

    job = session.Job(paths=paths, spec=spec, train_files=train_files, budget=budget,
                      model_config=model_config, task_config=task_config,
                      train_config=train_config, source=source, warm=warm_start,
                      tokenizer_sha256=tokenizer_digest(paths.tokenizer), teacher=teacher)
    return session.train(job, log)


def plan_budget(train_config, sequence_length: int) -> dict:
    """The run's length from `train.steps` and `train.max_tokens`, whichever ends first.

    Raises:
        ConfigError: the warm-up does not fit in the resulting number of steps.

    Returns:
        {"total_steps", "tokens_per_step", "decided_by", "steps", "max_tokens"}.
    """
    tokens_per_step = train_config.batch_size * sequence_length
    options = {}
    if train_config.steps is not None:
        options["steps"] = train_config.steps
    if train_config.max_tokens is not None:
        options["max_tokens"] = math.ceil(train_config.max_tokens / tokens_per_step)
    decided_by = min(options, key=options.get)
    total = options[decided_by]
    if train_config.warmup_steps >= total:
        raise ConfigError("train.warmup_steps", f"must be below the run's {total} steps "
                          f"(from train.{decided_by}), got {train_config.warmup_steps}")
    return {"total_steps": total, "tokens_per_step": tokens_per_step, "decided_by": decided_by,
            "steps": train_config.steps, "max_tokens": train_config.max_tokens}


def copy_logs(log_dir: str, output_dir: str) -> None:
    """Put the run's CSV and TensorBoard logs into the model artifact."""
    if os.path.abspath(log_dir) == os.path.abspath(output_dir):
        return
    csv_path = os.path.join(log_dir, CSV_FILE)
    if os.path.exists(csv_path):
        shutil.copy2(csv_path, os.path.join(output_dir, CSV_FILE))
    if os.path.isdir(os.path.join(log_dir, "logs")):
        shutil.copytree(os.path.join(log_dir, "logs"), os.path.join(output_dir, "logs"),
                        dirs_exist_ok=True)
