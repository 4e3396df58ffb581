"""One training session: strategy, model, resume or warm start, the loop, the export.

`run_fn` checks what it can without TensorFlow and calls `train` here. The order matters:
the strategy comes first (MultiWorkerMirroredStrategy must exist before other TensorFlow
work), and everything that can be refused (replica split, warm-start fit) is checked
before the first training batch is read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from components.train import compression, data, flops, optimization
from pipeline.core.contracts import model as model_contract
from components.train import tasks
from components.train.checkpoints import Checkpoints
from components.train.fit import FitResult, Plan, fit
from components.train.loop import Trainer
from components.train.monitor import Monitor
from components.train.precision import dtype_policy
from components.train.strategy import Placement, make_strategy
from models.factory import build_model
from models.objectives import objective_for
from models.tokenizer import load_tokenizer
from pipeline.core.artifacts import Artifact, write_json_atomic
from pipeline.core.configio import to_dict
from pipeline.core.errors import ConfigError


@dataclass(frozen=True)
class Job:
    """What to train, as `run_fn` resolved it.

    Attributes:
        paths: `run_fn.Paths`.
        spec: the examples' `data.FeatureSpec`.
        train_files: the train shards.
        budget: `run_fn.plan_budget`.
        model_config, task_config, train_config: the sections, tuned overrides applied.
        source: where the hyperparameters came from (`hparams.resolve`).
        warm: the resolved `train.warm_start` input, or None.
        tokenizer_sha256: the tokenizer artifact's digest.
        teacher: the resolved `train.distill.teacher` input, or None.
    """

    paths: object
    spec: data.FeatureSpec
    train_files: list
    budget: dict
    model_config: object
    task_config: object
    train_config: object
    source: dict
    warm: Artifact | None
    tokenizer_sha256: str
    teacher: Artifact | None = None


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


def train(job: Job, log) -> dict:
    """Train, evaluate and (on the chief) write the model artifact; see `run_fn.run_fn`.

    Args:
        job: what to train.
        log: progress lines (stderr).

    Returns:
        The train summary.
    """
    from pipeline.core.contracts.model import SUMMARY_FILE
    from components.train.run_fn import copy_logs

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
        write_json_atomic(os.path.join(job.paths.output, SUMMARY_FILE), summary)
        copy_logs(session.log_dir, job.paths.output)
    return summary


def _build(job: Job) -> _Session:
    config = job.train_config
    strategy, placement = make_strategy(config.strategy)
    _check_split(config, strategy.num_replicas_in_sync)
    tokenizer = load_tokenizer(job.paths.tokenizer)
    tasks.check_examples(job.spec, job.task_config)
    keras.utils.set_random_seed(config.seed)
    with dtype_policy(config.precision), strategy.scope():
        model = build_model(job.model_config, job.task_config, tokenizer.info.vocab_size,
                            **tasks.model_arguments(job.spec))
        optimizer = optimization.make_optimizer(config, model, job.budget["total_steps"])
    hooks = compression.build_hooks(job, strategy, model, tokenizer.info)
    trainer = Trainer(model, optimizer, strategy,
                      objective_for(job.model_config, tokenizer.info, job.task_config),
                      config.seed, config.clip_norm, config.grad_accum_steps,
                      config.jit_compile, config.precision == "mixed_float16",
                      distiller=hooks.distiller, pruner=hooks.pruner,
                      freezer=tasks.freezer(model, job.task_config))
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
    if job.warm is not None and job.warm.uri:
        loaded = tasks.load_warm_start(trainer.model, job.warm.uri, job.tokenizer_sha256,
                                       job.task_config)
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
    vocab = session.tokenizer.info.vocab_size
    plain = build_model(job.model_config, job.task_config, vocab,
                        **tasks.model_arguments(job.spec))
    plain.set_weights([np.asarray(w) for w in session.trainer.model.get_weights()])
    plain.save(os.path.join(job.paths.output, "model.keras"))
    tasks.save_export(plain, session.tokenizer, job.spec, job.task_config,
                      os.path.join(job.paths.output, "saved_model"))
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
        "hyperparameters": {
            "source": job.source["source"], "overrides": job.source["overrides"],
            "train": to_dict(config), "model": to_dict(job.model_config),
            "task": to_dict(job.task_config),
            "resolved": {"weight_decay": optimization.resolved_weight_decay(config),
                         "total_steps": budget["total_steps"],
                         "optimizer": optimization.describe(trainer.optimizer)}},
    }
