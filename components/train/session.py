"""One training run, the trainer's `run_fn` (TFX style): examples + tokenizer -> a trained,
exported model.

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

`run_fn` first checks what needs no model (tuned hyperparameters, window, budget, shards),
then trains. The order matters: the strategy comes first (MultiWorkerMirroredStrategy must
exist before other TensorFlow work), and everything that can be refused (replica split,
warm-start fit) is checked before the first training batch is read. What differs per
`task.type` (model arguments, warm start, frozen backbone) is asked of the task type's
object (`tasks.task_for`); the export chooses its signatures from the examples' `task`
entry.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from components.train import compression, data, flops, hparams, init_from as checkpoints_import
from components.train import optimization, tasks
from components.train.checkpoints import Checkpoints
from components.train.loop import FitResult, Plan, Trainer, fit
from components.train.monitor import CSV_FILE, Monitor
from components.train.precision import dtype_policy
from components.train.strategy import Placement, make_strategy
from models.export import save_export
from models.factory import build_model
from models.objectives import objective_for
from models.tokenizer import load_tokenizer
from pipeline.core.artifacts import Artifact, write_json_atomic
from pipeline.core.configio import to_dict
from pipeline.core.contracts import model as model_contract
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


@dataclass(frozen=True)
class Job:
    """What to train, as `run_fn` resolved it.

    Attributes:
        paths: `Paths`.
        spec: the examples' `data.FeatureSpec`.
        train_files: the train shards.
        budget: `plan_budget`.
        model_config, task_config, train_config: the sections, tuned overrides applied.
        task: what the trainer does for `task.type` (`tasks.task_for`).
        source: where the hyperparameters came from (`hparams.resolve`).
        warm: the resolved `train.warm_start` input, or None.
        tokenizer_sha256: the tokenizer artifact's digest.
        teacher: the resolved `train.distill.teacher` input, or None.
        checkpoint: the `train.init_from` checkpoint (`models.checkpoints.Checkpoint`), or
            None; the model is built to its shape and starts from its weights.
    """

    paths: Paths
    spec: data.FeatureSpec
    train_files: list
    budget: dict
    model_config: object
    task_config: object
    task: tasks.LanguageModelTask
    train_config: object
    source: dict
    warm: Artifact | None
    tokenizer_sha256: str
    teacher: Artifact | None = None
    checkpoint: object | None = None


@dataclass
class _Session:
    strategy: tf.distribute.Strategy
    placement: Placement
    tokenizer: object
    trainer: Trainer
    iterator: object
    checkpoints: Checkpoints | None
    log_dir: str
    hooks: compression.Hooks


def run_fn(paths: Paths, model_config, task_config, train_config, log: Callable[[str], None],
           warm_start=None, teacher=None, init_from=None) -> dict:
    """Train the configured model and write the model artifact.

    Args:
        paths: inputs, output and working directories.
        model_config: `ModelConfig`.
        task_config: `TaskConfig`.
        train_config: `TrainConfig`.
        log: progress lines (stderr).
        warm_start: the resolved `train.warm_start` artifact
            (`pipeline/core/contracts/model.py` `resolve`), or None.
        teacher: the resolved `train.distill.teacher` artifact (`distill.resolve`), or None.
        init_from: the resolved `train.init_from` artifact (a checkpoint directory), or None.

    Returns:
        The train summary (also written to `train_summary.json` by the chief).
    """
    train_config, model_config, source = hparams.resolve(train_config, model_config,
                                                         paths.hyperparameters)
    checkpoint = None
    if init_from is not None:
        checkpoint, model_config = checkpoints_import.resolve(init_from.uri, model_config)
    spec = data.read_feature_spec(paths.examples)
    if spec.sequence_length > model_config.max_sequence_length:
        raise UsageError(f"examples have sequence_length {spec.sequence_length}, above "
                         f"model.max_sequence_length {model_config.max_sequence_length}")
    budget = plan_budget(train_config, spec.sequence_length)
    train_files = data.split_files(paths.examples, "train")
    if not train_files:
        raise UsageError(f"{paths.examples}: no train-*.tfrecord shards")
    job = Job(paths=paths, spec=spec, train_files=train_files, budget=budget,
              model_config=model_config, task_config=task_config,
              task=tasks.task_for(task_config), train_config=train_config, source=source,
              warm=warm_start, tokenizer_sha256=tokenizer_digest(paths.tokenizer),
              teacher=teacher, checkpoint=checkpoint)
    return _train(job, log)


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


def _train(job: Job, log) -> dict:
    """Train, evaluate and (on the chief) write the model artifact; see `run_fn`."""
    tf.config.experimental.enable_op_determinism()
    session = _build(job)
    start = _start(job, session, log)
    for line in compression.describe(job, session.hooks):
        log(line)
    trainer = session.trainer
    log(f"training {trainer.model.count_params():,} parameters on "
        f"{session.strategy.num_replicas_in_sync} replica(s) ({session.placement.name}), "
        f"global batch {job.train_config.batch_size} x {job.spec.sequence_length} tokens, "
        f"{job.budget['total_steps']} steps (by train.{job.budget['decided_by']})")
    per_token = flops.flops_per_token(trainer.model, job.spec.sequence_length)
    peak = _cluster_peak(job.train_config.precision, job.paths.cache, session)
    result = _fit(job, session, log, per_token, peak)
    evaluated_last = result.evals and result.evals[-1]["step"] == result.steps
    eval_loss = result.evals[-1]["loss"] if evaluated_last else _evaluate(job, trainer)
    log(f"eval loss {eval_loss}" if eval_loss is None else f"eval loss {eval_loss:.4f}")
    summary = _summary(job, session, start, result, eval_loss,
                       {"model_flops_per_token": per_token, "peak_flops": peak})
    summary.update(compression.summary_fields(job, session.hooks, trainer))
    if session.placement.is_chief:
        summary["variants"] = _export(job, session)
        write_json_atomic(os.path.join(job.paths.output, model_contract.SUMMARY_FILE), summary)
        _copy_logs(session.log_dir, job.paths.output)
    return summary


def _build(job: Job) -> _Session:
    config = job.train_config
    strategy, placement = make_strategy(config.strategy)
    _check_split(config, strategy.num_replicas_in_sync)
    tokenizer = load_tokenizer(job.paths.tokenizer)
    job.task.check_examples(job.spec)
    keras.utils.set_random_seed(config.seed)
    with dtype_policy(config.precision), strategy.scope():
        model = _new_model(job, tokenizer.info.vocab_size)
        optimizer = optimization.make_optimizer(config, model, job.budget["total_steps"])
    hooks = compression.build_hooks(job, strategy, model, tokenizer.info)
    trainer = Trainer(model, optimizer, strategy,
                      objective_for(job.model_config, tokenizer.info, job.task_config),
                      config.seed, config.clip_norm, config.grad_accum_steps,
                      config.jit_compile, config.precision == "mixed_float16",
                      distiller=hooks.distiller, pruner=hooks.pruner,
                      freezer=job.task.freezer(model))
    iterator = iter(data.train_dataset(job.train_files, job.spec, config.batch_size,
                                       config.seed, config.shuffle_buffer))
    checkpoints = None
    if job.paths.work is not None and config.checkpoint_every is not None:
        checkpoints = Checkpoints(os.path.join(job.paths.work, "checkpoints"),
                                  {"model": model, "optimizer": optimizer,
                                   "state": trainer.state, "iterator": iterator,
                                   **hooks.checkpoint_objects()},
                                  keep=config.keep_checkpoints, is_chief=placement.is_chief,
                                  task_id=placement.task_id)
    log_dir = os.path.join(job.paths.work, "logs") if job.paths.work else job.paths.output
    return _Session(strategy, placement, tokenizer, trainer, iterator, checkpoints, log_dir,
                    hooks)


def _new_model(job: Job, vocabulary_size: int):
    """A freshly initialized model of the job's sections and task."""
    return build_model(job.model_config, job.task_config, vocabulary_size,
                       backbone_arguments=job.checkpoint.backbone if job.checkpoint else None,
                       **job.task.model_arguments(job.spec))


def _check_split(train_config, replicas: int) -> None:
    """The global batch must split evenly into replicas x micro-batches."""
    parts = replicas * train_config.grad_accum_steps
    if train_config.batch_size % parts:
        raise ConfigError("train.batch_size", f"must be a multiple of {parts} ({replicas} "
                          f"replica(s) x train.grad_accum_steps {train_config.grad_accum_steps}), "
                          f"got {train_config.batch_size}")


def _start(job: Job, session: _Session, log) -> dict:
    """Resume from the newest checkpoint, else warm-start if asked: what happened."""
    trainer = session.trainer
    resumed = session.checkpoints.restore_latest(log) if session.checkpoints else None
    if resumed:
        log(f"resuming from checkpoint {resumed} at step {trainer.step} of "
            f"{job.budget['total_steps']} (model, optimizer, data position and loop state "
            "restored)")
        # A warm start, if any, happened in the session that wrote the checkpoint.
        return {"resumed": resumed,
                "warm_loaded": "checkpoint" if job.warm is not None and job.warm.uri else None}
    if job.checkpoint is not None:
        loaded = checkpoints_import.load(trainer.model, job.checkpoint, session.tokenizer.info)
        log(f"initialized {loaded['weights_assigned']} weights from the {loaded['model_type']} "
            f"checkpoint {loaded['directory']}")
        return {"resumed": None, "warm_loaded": None, "init_from": loaded}
    if job.warm is not None and job.warm.uri:
        loaded = job.task.load_warm_start(trainer.model, job.warm.uri, job.tokenizer_sha256)
        log(f"warm start from {job.warm.uri}")
        return {"resumed": None, "warm_loaded": loaded}
    if job.warm is not None:
        log(f"train.warm_start {job.warm.properties.get('requested')}: nothing has been pushed "
            "yet, so training starts from fresh weights")
    return {"resumed": None, "warm_loaded": None}


def _evaluate(job: Job, trainer: Trainer) -> float | None:
    files = data.split_files(job.paths.examples, "eval")
    if not files:
        return None
    return trainer.evaluate(data.eval_dataset(files, job.spec, job.train_config.batch_size,
                                              job.train_config.eval_batches))


def _fit(job: Job, session: _Session, log, per_token: float, peak: dict | None) -> FitResult:
    config = job.train_config
    plan = Plan(total_steps=job.budget["total_steps"],
                tokens_per_step=job.budget["tokens_per_step"],
                steps_per_execution=config.steps_per_execution, log_every=config.log_every,
                eval_every=config.eval_every,
                checkpoint_every=config.checkpoint_every if session.checkpoints else None,
                patience=config.early_stopping_patience,
                min_delta=config.early_stopping_min_delta)
    monitor = Monitor(session.log_dir if session.placement.is_chief else None,
                      plan.total_steps, log, resume_step=session.trainer.step)
    try:
        return fit(session.trainer, session.iterator, plan, monitor,
                   lambda: _evaluate(job, session.trainer), session.checkpoints, per_token,
                   peak["flops_per_second"] if peak else None)
    finally:
        monitor.close()


def _cluster_peak(precision: str, cache_dir, session: _Session) -> dict | None:
    """The measured matmul peak of every device the run trains on, summed."""
    if session.placement.name == "tpu":
        return None
    dtype = {"float32": "float32", "mixed_bfloat16": "bfloat16",
             "mixed_float16": "float16"}[precision]
    peak = flops.peak_flops(dtype, cache_dir)
    # Logical CPU devices share one host's cores: count hosts, not replicas, on CPUs.
    devices = (session.placement.num_workers if "CPU" in peak["device"]
               else session.strategy.num_replicas_in_sync)
    return {**peak, "devices": devices, "flops_per_second": peak["flops_per_second"] * devices}


def _export(job: Job, session: _Session) -> dict:
    """Save a float32 copy of the model, free of distribution wrappers, as .keras and
    as the servable SavedModel (and its int8 variant if asked): the variants' sizes."""
    plain = _new_model(job, session.tokenizer.info.vocab_size)
    plain.set_weights([np.asarray(w) for w in session.trainer.model.get_weights()])
    plain.save(os.path.join(job.paths.output, "model.keras"))
    save_export(plain, session.tokenizer, job.spec.sequence_length,
                os.path.join(job.paths.output, "saved_model"), job.spec.task)
    return compression.export_variants(job, plain, session.tokenizer)


def weights_digest(model) -> str:
    """SHA-256 of the model's weights, in order: equal on every worker of a correct run."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _summary(job: Job, session: _Session, start: dict, result: FitResult, eval_loss,
             measures: dict) -> dict:
    trainer, config, budget = session.trainer, job.train_config, job.budget
    steady, peak = result.tokens_per_second, measures["peak_flops"]
    return {
        "steps": result.steps,
        "budget": budget,
        "stop_reason": result.stop_reason,
        "tokens_seen": result.steps * budget["tokens_per_step"],
        "target_tokens_seen": int(trainer.state.target_tokens.numpy()),
        "final_train_loss": result.final_train_loss,
        "eval_loss": eval_loss,
        "eval_batches": config.eval_batches,
        "evals": result.evals,
        "best_eval_loss": (float(trainer.state.best_eval_loss.numpy())
                           if config.early_stopping_patience else None),
        "train_tokens_per_second": steady,
        "compile_seconds": result.compile_seconds,
        "xla": trainer.xla,
        "warmup_seconds": result.warmup_seconds,
        "train_seconds": result.train_seconds,
        **measures,
        "mfu": (steady * measures["model_flops_per_token"] / peak["flops_per_second"]
                if steady and peak else None),
        "resumed_from_step": result.start_step if start["resumed"] else None,
        "resumed_from_checkpoint": start["resumed"],
        "sequence_length": job.spec.sequence_length,
        "parameters": trainer.model.count_params(),
        "weights_sha256": weights_digest(trainer.model),
        "replicas": session.strategy.num_replicas_in_sync,
        "strategy": {"name": session.placement.name, "workers": session.placement.num_workers},
        "tokenizer": {"uri": job.paths.tokenizer, "sha256": job.tokenizer_sha256},
        "warm_start": ({**model_contract.record(job.warm), "loaded": start["warm_loaded"]}
                       if job.warm is not None else None),
        "init_from": start.get("init_from"),
        "hyperparameters": {
            "source": job.source["source"], "overrides": job.source["overrides"],
            "train": to_dict(config), "model": to_dict(job.model_config),
            "task": to_dict(job.task_config),
            "resolved": {"weight_decay": optimization.resolved_weight_decay(config),
                         "total_steps": budget["total_steps"],
                         "optimizer": optimization.describe(trainer.optimizer)}},
    }


def _copy_logs(log_dir: str, output_dir: str) -> None:
    """Put the run's CSV and TensorBoard logs into the model artifact."""
    if os.path.abspath(log_dir) == os.path.abspath(output_dir):
        return
    csv_path = os.path.join(log_dir, CSV_FILE)
    if os.path.exists(csv_path):
        shutil.copy2(csv_path, os.path.join(output_dir, CSV_FILE))
    if os.path.isdir(os.path.join(log_dir, "logs")):
        shutil.copytree(os.path.join(log_dir, "logs"), os.path.join(output_dir, "logs"),
                        dirs_exist_ok=True)
