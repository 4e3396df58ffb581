"""The trainer's `run_fn` (TFX style): examples + tokenizer -> a trained, exported model.

Model artifact layout:
    saved_model/         the servable SavedModel (`models/export.py`)
    model.keras          the Keras model (architecture + weights)
    train_summary.json   what was trained, with which hyperparameters, and how fast
    train_log.csv        step, loss, learning_rate, grad_norm, tokens_per_second, elapsed_seconds
"""

from __future__ import annotations

import csv
import os
from typing import Callable

import keras
import tensorflow as tf

from components.training import data, hparams
from components.training.loop import Trainer, TrainResult
from components.training.optimization import make_optimizer
from components.training.strategy import make_strategy
from models.export import save_export
from models.factory import build_model
from models.objectives import objective_for
from models.tokenizer import load_tokenizer
from pipeline.artifacts import write_json_atomic
from pipeline.configio import to_dict
from pipeline.errors import UsageError

SUMMARY_FILE = "train_summary.json"
LOG_FILE = "train_log.csv"


def run_fn(examples_dir: str, tokenizer_dir: str, hyperparameters_dir: str | None,
           output_dir: str, model_config, task_config, train_config,
           log: Callable[[str], None]) -> dict:
    """Train the configured model and write the model artifact.

    Args:
        examples_dir: the transform component's examples artifact.
        tokenizer_dir: the tokenizer artifact.
        hyperparameters_dir: the tune component's artifact, or None.
        output_dir: the (empty) model artifact directory.
        model_config: `ModelConfig`.
        task_config: `TaskConfig`.
        train_config: `TrainConfig`.
        log: progress lines (stderr).

    Returns:
        The train summary (also written to `train_summary.json`).
    """
    train_config, model_config, source = hparams.resolve(train_config, model_config,
                                                         hyperparameters_dir)
    spec = data.read_feature_spec(examples_dir)
    if spec.sequence_length > model_config.max_sequence_length:
        raise UsageError(f"examples have sequence_length {spec.sequence_length}, above "
                         f"model.max_sequence_length {model_config.max_sequence_length}")
    train_files = data.split_files(examples_dir, "train")
    if not train_files:
        raise UsageError(f"{examples_dir}: no train-*.tfrecord shards")
    tokenizer = load_tokenizer(tokenizer_dir)

    keras.utils.set_random_seed(train_config.seed)
    tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(train_config.strategy)
    with strategy.scope():
        model = build_model(model_config, task_config, tokenizer.info.vocab_size)
        optimizer = make_optimizer(train_config, model)
    trainer = Trainer(model, optimizer, strategy, objective_for(model_config), train_config.seed,
                      train_config.clip_norm, train_config.jit_compile)
    log(f"training {model.count_params():,} parameters on {strategy.num_replicas_in_sync} "
        f"replica(s), global batch {train_config.batch_size} x {spec.sequence_length} tokens")
    train_data = data.train_dataset(train_files, spec, train_config.batch_size,
                                    train_config.seed, train_config.shuffle_buffer)
    result = trainer.fit(train_data, train_config.steps,
                         train_config.batch_size * spec.sequence_length,
                         train_config.log_every, log)
    eval_loss = _evaluate(trainer, examples_dir, spec, train_config)
    log(f"eval loss {eval_loss}" if eval_loss is None else f"eval loss {eval_loss:.4f}")

    model.save(os.path.join(output_dir, "model.keras"))
    save_export(model, tokenizer, spec.sequence_length, os.path.join(output_dir, "saved_model"))
    summary = _summary(result, eval_loss, model, spec, source, model_config, task_config,
                       train_config, strategy)
    write_json_atomic(os.path.join(output_dir, SUMMARY_FILE), summary)
    _write_log(os.path.join(output_dir, LOG_FILE), result.log)
    return summary


def _evaluate(trainer: Trainer, examples_dir: str, spec, train_config) -> float | None:
    files = data.split_files(examples_dir, "eval")
    if not files:
        return None
    dataset = data.eval_dataset(files, spec, train_config.batch_size, train_config.eval_batches)
    return trainer.evaluate(dataset)


def _summary(result: TrainResult, eval_loss, model, spec, source, model_config, task_config,
             train_config, strategy) -> dict:
    return {
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "target_tokens_seen": result.target_tokens_seen,
        "final_train_loss": result.final_train_loss,
        "eval_loss": eval_loss,
        "eval_batches": train_config.eval_batches,
        "train_tokens_per_second": result.tokens_per_second,
        "compile_seconds": result.compile_seconds,
        "warmup_seconds": result.warmup_seconds,
        "sequence_length": spec.sequence_length,
        "parameters": model.count_params(),
        "replicas": strategy.num_replicas_in_sync,
        "hyperparameters": {"source": source["source"], "overrides": source["overrides"],
                            "train": to_dict(train_config), "model": to_dict(model_config),
                            "task": to_dict(task_config)},
    }


def _write_log(path: str, rows: list[dict]) -> None:
    columns = ["step", "loss", "learning_rate", "grad_norm", "tokens_per_second",
               "elapsed_seconds"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
