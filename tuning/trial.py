"""One trial: build the model, train it for its token budget with the trainer's own loop,
evaluate it on the eval split.

Trials reuse the trainer's pieces (`components/train/`: strategy, optimizer and schedule,
the compiled `Trainer` step, `fit`, the tf.data pipelines) so a trial trains exactly as
`train` would with those hyperparameters. What differs: the budget is tokens (see
`budget.py`), there is no periodic evaluation, early stopping, warm start or export, and
every trial is evaluated on the same eval examples (`train.eval_batches` batches of the
config's `train.batch_size`, whatever the trial's batch size), so objectives compare.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf

from components.train import data, optimization
from components.train.loop import Plan, Trainer, TrainingDiverged, fit
from components.train.monitor import Monitor
from components.train.precision import dtype_policy
from components.train.strategy import Placement, make_strategy
from models.factory import build_model
from models.objectives import objective_for
from models.tokenizer import load_tokenizer
from pipeline.core.errors import UsageError
from tuning.budget import TrialPlan

CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Context:
    """What every trial of a sweep shares (built once per process).

    Attributes:
        strategy, placement: the tf.distribute strategy trials train under.
        tokenizer: the tokenizer (its vocabulary size and special ids).
        spec: the examples' feature spec.
        train_files, eval_files: the shards.
        task_config: `TaskConfig`.
        eval_batch_size, eval_batches: the fixed eval set (see the module doc).
    """

    strategy: tf.distribute.Strategy
    placement: Placement
    tokenizer: object
    spec: data.FeatureSpec
    train_files: list
    eval_files: list
    task_config: object
    eval_batch_size: int
    eval_batches: int


@dataclass(frozen=True)
class Outcome:
    """What a finished trial measured.

    Attributes:
        eval_loss: mean token NLL on the eval examples (nats).
        final_train_loss: the last step's training loss.
        start_step: the step it started from (its parent's stop when continued, else 0).
        steps: the step the model stopped at (its parent's included).
        resumed: whether it continued its parent's checkpoint.
    """

    eval_loss: float
    final_train_loss: float | None
    start_step: int
    steps: int
    resumed: bool


class TrialFailed(Exception):
    """A trial that could not finish; `reason` is one line, `tokens` what it trained on."""

    def __init__(self, reason: str, tokens: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.tokens = tokens


def make_context(examples: str, tokenizer_dir: str, task_config, train_config) -> Context:
    """Read the inputs and set up the strategy trials train under.

    `train.strategy: multi_worker` becomes `auto` here: in a parallel sweep every replica
    runs trials of its own (see `distributed.py`), it does not join one training cluster.

    Args:
        examples: the examples artifact directory.
        tokenizer_dir: the tokenizer artifact directory.
        task_config: `TaskConfig`.
        train_config: the config's `TrainConfig`.

    Returns:
        The shared `Context`.
    """
    tf.config.experimental.enable_op_determinism()
    spec = data.read_feature_spec(examples)
    train_files = data.split_files(examples, "train")
    eval_files = data.split_files(examples, "eval")
    if not train_files or not eval_files:
        raise UsageError(f"{examples}: tuning needs train-*.tfrecord and eval-*.tfrecord "
                         "shards (the objective is measured on the eval split)")
    name = "auto" if train_config.strategy == "multi_worker" else train_config.strategy
    strategy, placement = make_strategy(name)
    return Context(strategy=strategy, placement=placement,
                   tokenizer=load_tokenizer(tokenizer_dir), spec=spec,
                   train_files=train_files, eval_files=eval_files, task_config=task_config,
                   eval_batch_size=train_config.batch_size,
                   eval_batches=train_config.eval_batches)


def build(context: Context, train_config, model_config):
    """A freshly initialized model (call under the strategy's scope).

    Args:
        context: the sweep's `Context`.
        train_config: the trial's `TrainConfig` (seed, precision).
        model_config: the trial's `ModelConfig`.

    Returns:
        The Keras model.
    """
    keras.utils.set_random_seed(train_config.seed)
    with dtype_policy(train_config.precision):
        return build_model(model_config, context.task_config, context.tokenizer.info.vocab_size)


def train_and_evaluate(context: Context, model, train_config, model_config, plan: TrialPlan,
                       checkpoint_in: str | None, checkpoint_out: str | None,
                       log: Callable[[str], None]) -> Outcome:
    """Train `model` from `plan.start_step` to `plan.stop_step` and evaluate it.

    Args:
        context: the sweep's `Context`.
        model: the trial's model from `build`.
        train_config: the trial's `TrainConfig` (its batch size builds the input pipeline).
        model_config: the trial's `ModelConfig`.
        plan: the trial's steps.
        checkpoint_in: the parent's checkpoint directory to continue (Hyperband), or None;
            a parent that left none means a fresh start.
        checkpoint_out: the directory to save the end state in for a continuation, or None.
        log: progress lines.

    Returns:
        The `Outcome`.

    Raises:
        TrialFailed: the loss diverged (or any other failure, with its reason).
    """
    trainer, iterator = _trainer(context, model, train_config, model_config, plan)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=trainer.optimizer,
                                     state=trainer.state, iterator=iterator)
    parent = tf.train.latest_checkpoint(checkpoint_in) if checkpoint_in else None
    resumed = parent is not None
    if resumed:
        checkpoint.restore(parent).assert_consumed()
    start = trainer.step
    steps = Plan(total_steps=plan.stop_step, tokens_per_step=plan.tokens_per_step,
                 steps_per_execution=train_config.steps_per_execution,
                 log_every=train_config.log_every)
    monitor = Monitor(None, plan.stop_step, log, resume_step=start)
    try:
        result = fit(trainer, iterator, steps, monitor)
    except TrainingDiverged as err:
        raise TrialFailed(f"diverged: {err}".split(" that update")[0].rstrip(";. "),
                          (trainer.step - start) * plan.tokens_per_step) from err
    finally:
        monitor.close()
    loss = trainer.evaluate(data.eval_dataset(context.eval_files, context.spec,
                                              context.eval_batch_size, context.eval_batches))
    if loss is None:
        raise TrialFailed("the eval batches hold no target tokens",
                          (trainer.step - start) * plan.tokens_per_step)
    if checkpoint_out:
        checkpoint.save(os.path.join(checkpoint_out, "ckpt"))
    return Outcome(eval_loss=loss, final_train_loss=result.final_train_loss, start_step=start,
                   steps=result.steps, resumed=resumed)


def _trainer(context: Context, model, train_config, model_config, plan: TrialPlan):
    parts = context.strategy.num_replicas_in_sync * train_config.grad_accum_steps
    if train_config.batch_size % parts:
        raise TrialFailed(f"batch size {train_config.batch_size} does not split into "
                          f"{parts} replica(s) x micro-batches")
    with dtype_policy(train_config.precision), context.strategy.scope():
        optimizer = optimization.make_optimizer(train_config, model, plan.schedule_steps)
    trainer = Trainer(model, optimizer, context.strategy,
                      objective_for(model_config, context.tokenizer.info, context.task_config),
                      train_config.seed,
                      train_config.clip_norm, train_config.grad_accum_steps,
                      train_config.jit_compile, train_config.precision == "mixed_float16")
    iterator = iter(data.train_dataset(context.train_files, context.spec,
                                       train_config.batch_size, train_config.seed,
                                       train_config.shuffle_buffer))
    return trainer, iterator


def failure_reason(err: BaseException) -> str:
    """One line saying why a trial failed (out of memory, divergence, or the exception).

    Args:
        err: what the trial raised.

    Returns:
        The reason, at most 300 characters.
    """
    if isinstance(err, TrialFailed):
        reason = err.reason
    elif isinstance(err, (tf.errors.ResourceExhaustedError, MemoryError)):
        reason = f"out of memory: {_first_line(err)}"
    else:
        reason = f"{type(err).__name__}: {_first_line(err)}"
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _first_line(err: BaseException) -> str:
    text = getattr(err, "message", None) or str(err)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
