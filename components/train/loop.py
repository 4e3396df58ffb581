"""The training loop: the compiled steps (`Trainer`) and the host loop around them (`fit`).

The compiled steps follow one code path for every tf.distribute strategy. `model.fit`
fails under MultiWorkerMirroredStrategy on this stack (DESIGN.md section 6), so the step
is written out. Every worker reads the same global batch from an ordinary (checkpointable)
tf.data iterator and each replica takes its rows of it. A replica runs its rows as
`grad_accum_steps` micro-batches, summing the token NLL and its gradient; the sums are
all-reduced once and divided by the global count of target tokens (a token-weighted mean
over the global batch, whatever the replica count and accumulation), clipped by their
global norm and applied with the Keras optimizer, whose own second all-reduce is switched
off (`optimization._PreReducedGradients`).

`Trainer.run_steps` runs up to `steps_per_execution` optimizer steps in one `tf.function`
call, with no host round trip in between. A step whose loss (or, without loss scaling,
gradient norm) is not finite is not applied: the call stops there and reports it.

Randomness inside a step is stateless: the objective's input corruption and the model's
dropout masks are functions of (`seed`, step, micro-batch, replica), so a run resumed from a
checkpoint draws exactly what the uninterrupted run drew (Keras' dropout layers keep a
`SeedGenerator` state that is no checkpointed weight; `Trainer._dropout_seeds` sets it for
each forward pass instead).

The host loop (`fit`) does what happens between those calls: logging, evaluation,
checkpoints, stopping. Each call ends at the next step that must be logged, evaluated or
checkpointed, so those happen at exact step numbers whatever `steps_per_execution` is.
Wall time is measured around the compiled calls only: evaluation and checkpoint writing
do not count against tokens/s.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import keras
import tensorflow as tf

from components.train.checkpoints import Checkpoints, step_of
from components.train.flops import xla_decision
from components.train.monitor import Monitor
from models.objectives import token_nll

# Stateless-seed stream of the eval batches (training steps use the step number).
_EVAL_STREAM = -1
# Compiled calls excluded from the steady-state throughput: the first traces and compiles
# the step, the next ones still warm caches and thread pools.
WARMUP_CALLS = 3


class TrainState(tf.Module):
    """The loop's own checkpointed state beside the model and the optimizer.

    Attributes:
        step: optimizer steps taken (applied or, with loss scaling, skipped).
        target_tokens: target tokens the loss was averaged over, summed over the run.
        best_eval_loss: the lowest eval loss so far (early stopping).
        evals_without_improvement: evaluations since `best_eval_loss` last improved.
    """

    def __init__(self):
        super().__init__(name="train_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.target_tokens = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                         name="target_tokens")
        self.best_eval_loss = tf.Variable(float("inf"), dtype=tf.float64, trainable=False,
                                          name="best_eval_loss")
        self.evals_without_improvement = tf.Variable(0, dtype=tf.int64, trainable=False,
                                                     name="evals_without_improvement")


class Trainer:
    """Compiled train and eval steps for one model, optimizer and strategy.

    Args:
        model: a Keras model taking {token_ids, segment_ids} and returning logits, built
            under `strategy.scope()`.
        optimizer: its optimizer, built under the same scope (a `LossScaleOptimizer`
            when `loss_scaling`).
        strategy: the tf.distribute strategy.
        objective: turns a batch into (inputs, targets, weights); `models.objectives`.
        seed: the run's seed; the objective's input corruption and the model's dropout
            get stateless per-step seeds derived from it, so a resumed run draws them
            identically.
        clip_norm: global-norm clipping threshold, or None.
        grad_accum_steps: micro-batches per replica per step.
        jit_compile: compile each micro-batch's forward and backward pass with XLA: true,
            false or `auto` (`flops.xla_decision`; what was decided is `self.xla`).
        loss_scaling: scale the loss by the optimizer's dynamic scale (mixed_float16).
        distiller: a `distill.Distiller`: the gradient is that of its per-token loss (the
            reported loss stays the NLL); None: plain NLL.
        pruner: a `pruning.Pruner`, called after every applied update; None: no pruning.
        freezer: a `tasks.BackboneFreezer`: while it holds, only the head is trained;
            None: every trainable variable is.
    """

    def __init__(self, model, optimizer, strategy: tf.distribute.Strategy, objective, seed: int,
                 clip_norm: float | None, grad_accum_steps: int = 1,
                 jit_compile: bool | str = False,
                 loss_scaling: bool = False, distiller=None, pruner=None, freezer=None):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.objective = objective
        self.seed = seed
        self.clip_norm = clip_norm
        self.grad_accum_steps = grad_accum_steps
        self.loss_scaling = loss_scaling
        self.distiller = distiller
        self.pruner = pruner
        self.freezer = freezer
        with strategy.scope():
            self.state = TrainState()
        # Keras counts `SeedGenerator` states (the dropout layers') among a model's
        # variables but not among its weights.
        weight_ids = {id(v) for v in model.weights}
        self._seed_states = [v for v in model.variables if id(v) not in weight_ids]
        self.xla = xla_decision(jit_compile, model)
        self._grads = tf.function(self._loss_and_grads, jit_compile=self.xla["compiled"])
        self.run_steps_fn = tf.function(self._run_steps)
        self.eval_step = tf.function(self._eval_step)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return int(self.state.step.numpy())

    # --- one replica ---

    def _seed(self, stream, index):
        """A stateless int32 [2] seed for (step or eval stream, micro-batch, replica)."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.stack([tf.constant(self.seed, tf.int32), tf.cast(stream, tf.int32)])
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int32))
        return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int32))

    def _dropout_seeds(self, seed):
        """A scope in which the model's dropout layers draw from `seed`, not from their
        own generators' state (which no checkpoint holds): each generator starts from its
        own seed split from `seed`, so the masks are a function of the run's seed, the
        step, the micro-batch and the replica, and a resumed run draws them exactly."""
        if not self._seed_states:
            return contextlib.nullcontext()
        seeds = tf.cast(tf.random.experimental.stateless_split(seed, len(self._seed_states)),
                        tf.int64)
        return keras.StatelessScope([(state, seeds[i])
                                     for i, state in enumerate(self._seed_states)],
                                    initialize_variables=False)

    def _loss_and_grads(self, batch, seed, scale):
        inputs, targets, weights = self.objective.prepare(batch, seed)
        with tf.GradientTape() as tape:
            with self._dropout_seeds(seed):
                logits = self.model(inputs, training=True)
            nll = token_nll(logits, targets)
            nll_sum = tf.reduce_sum(nll * weights)
            loss_sum = nll_sum if self.distiller is None else tf.reduce_sum(
                self.distiller.token_loss(inputs, logits, nll) * weights)
            scaled = loss_sum * scale if self.loss_scaling else loss_sum
        grads = tape.gradient(scaled, self.model.trainable_variables)
        # Embedding gradients arrive as IndexedSlices; dense ones all-reduce and add simply.
        return nll_sum, tf.reduce_sum(weights), [tf.convert_to_tensor(g) for g in grads]

    def _accumulated(self, batch, scale):
        """NLL sum, target count and gradient sum over this replica's micro-batches."""
        step = self.state.step
        if self.grad_accum_steps == 1:
            return self._grads(batch, self._seed(step, 0), scale)
        micro = {name: tf.reshape(value, tf.concat(
                     [[self.grad_accum_steps, -1], tf.shape(value)[1:]], axis=0))
                 for name, value in batch.items()}
        nll_sum = tf.constant(0.0)
        count = tf.constant(0.0)
        grads = [tf.zeros_like(v.value) for v in self.model.trainable_variables]
        for i in tf.range(self.grad_accum_steps):
            part = {name: value[i] for name, value in micro.items()}
            nll_i, count_i, grads_i = self._grads(part, self._seed(step, i), scale)
            nll_sum += nll_i
            count += count_i
            grads = [a + g for a, g in zip(grads, grads_i)]
        return nll_sum, count, grads

    def _replica_grads(self, batch):
        context = tf.distribute.get_replica_context()
        scale = (tf.identity(self.optimizer.dynamic_scale.value) if self.loss_scaling
                 else tf.constant(1.0))
        nll_sum, count, grads = self._accumulated(batch, scale)
        nll_sum, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [nll_sum, count])
        count = tf.maximum(count, 1.0)
        unscale = count * scale if self.loss_scaling else count
        grads = [g / unscale for g in context.all_reduce(tf.distribute.ReduceOp.SUM, grads)]
        if self.freezer is not None:
            grads = self.freezer.mask_gradients(grads, self.state.step)
        if self.clip_norm:
            grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
        else:
            norm = tf.linalg.global_norm(grads)
        return nll_sum / count, norm, count, grads

    def _replica_apply(self, grads, variables=None):
        variables = self.model.trainable_variables if variables is None else variables
        if self.loss_scaling:
            # The LossScaleOptimizer checks these for inf/NaN (skipping the step and
            # lowering the scale) and divides the scale out again.
            scale = self.optimizer.dynamic_scale.value
            grads = [g * scale for g in grads]
        self.optimizer.apply_gradients(zip(grads, variables))

    # --- all replicas ---

    def _distribute(self, batch):
        """The global batch -> per-replica rows (replica i takes the i-th equal slice)."""

        def rows(context):
            i, n = context.replica_id_in_sync_group, context.num_replicas_in_sync
            return {name: _slice(value, i, n) for name, value in batch.items()}

        return self.strategy.experimental_distribute_values_from_function(rows)

    def _first(self, value):
        # After the all-reduce every replica holds the same value.
        return self.strategy.experimental_local_results(value)[0]

    def _run_steps(self, iterator, num_steps):
        with self.strategy.scope():
            done = tf.constant(0, tf.int64)
            loss = norm = learning_rate = tf.constant(0.0)
            nll_total = count_total = tf.constant(0.0, tf.float64)
            finite = tf.constant(True)
            for _ in tf.range(num_steps):
                outputs = self.strategy.run(self._replica_grads,
                                            args=(self._distribute(next(iterator)),))
                loss, norm, count = (self._first(v) for v in outputs[:3])
                learning_rate = tf.cast(self.optimizer.learning_rate, tf.float32)
                finite = tf.math.is_finite(loss)
                if not self.loss_scaling:
                    finite = tf.logical_and(finite, tf.math.is_finite(norm))
                if finite:
                    if self.freezer is None:
                        self.strategy.run(self._replica_apply, args=(outputs[3],))
                    else:
                        self.freezer.apply(self.strategy, self._replica_apply, outputs[3],
                                           self.state.step)
                    self.state.step.assign_add(1)
                    if self.pruner is not None:
                        self.pruner.after_step(self.state.step)
                    self.state.target_tokens.assign_add(tf.cast(count, tf.float64))
                    done += 1
                    nll_total += tf.cast(loss * count, tf.float64)
                    count_total += tf.cast(count, tf.float64)
                else:
                    break
        return {"steps": done, "loss": loss, "grad_norm": norm, "learning_rate": learning_rate,
                "nll_sum": nll_total, "target_tokens": count_total, "finite": finite}

    def run_steps(self, iterator, num_steps: int) -> dict:
        """Take up to `num_steps` optimizer steps in one compiled call.

        Args:
            iterator: an iterator over global batches {token_ids, segment_ids}.
            num_steps: steps to take (a tensor argument: no retracing per value).

        Returns:
            NumPy/Python values: `steps` applied; `loss`, `grad_norm`, `learning_rate` of
            the last step tried (the non-finite one if `finite` is False); `nll_sum` and
            `target_tokens` over the applied steps.
        """
        out = self.run_steps_fn(iterator, tf.constant(num_steps, tf.int64))
        values = {name: value.numpy() for name, value in out.items()}
        values["steps"] = int(values["steps"])
        values["finite"] = bool(values["finite"])
        return values

    def _replica_eval(self, batch, index):
        inputs, targets, weights = self.objective.prepare(batch, self._seed(_EVAL_STREAM, index))
        logits = self.model(inputs, training=False)
        return tf.reduce_sum(token_nll(logits, targets) * weights), tf.reduce_sum(weights)

    def _eval_step(self, batch, index):
        with self.strategy.scope():
            nll_sum, count = self.strategy.run(self._replica_eval,
                                               args=(self._distribute(batch), index))
            return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, nll_sum, axis=None),
                    self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(self, dataset: tf.data.Dataset) -> float | None:
        """Token-weighted mean NLL (nats) over `dataset` of global batches; None when it
        has no targets. Every worker must call it (the sums are all-reduced)."""
        total, count = 0.0, 0.0
        for index, batch in enumerate(dataset):
            nll_sum, tokens = self.eval_step(batch, tf.constant(index, tf.int32))
            total += float(nll_sum)
            count += float(tokens)
        return total / count if count else None


def _slice(value, index: int, parts: int):
    rows = tf.shape(value)[0] // parts
    return value[index * rows:(index + 1) * rows]


class TrainingDiverged(RuntimeError):
    """The training loss (or gradient) became NaN or Inf; the update was not applied."""


@dataclass(frozen=True)
class Plan:
    """When things happen during a run (all in optimizer steps).

    Attributes:
        total_steps: the run's budget.
        tokens_per_step: token positions per step (global batch x sequence length).
        steps_per_execution: most steps per compiled call.
        log_every, eval_every, checkpoint_every: intervals (None: never; the last step
            is always logged).
        patience: early stopping after this many evaluations without improvement (None: off).
        min_delta: the improvement that counts.
    """

    total_steps: int
    tokens_per_step: int
    steps_per_execution: int = 1
    log_every: int = 10
    eval_every: int | None = None
    checkpoint_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0

    def next_stop(self, step: int) -> int:
        """The step the compiled call starting after `step` must end at."""
        stop = min(self.total_steps, step + self.steps_per_execution)
        for every in (self.log_every, self.eval_every, self.checkpoint_every):
            if every:
                stop = min(stop, (step // every + 1) * every)
        return stop


@dataclass
class FitResult:
    """What a run (this session of it) measured.

    Attributes:
        steps: the step the run ended at.
        start_step: the step this session started from (> 0 after a resume).
        final_train_loss: mean token NLL of the last step.
        stop_reason: `budget` or `early_stopping`.
        evals: [{"step", "loss"}] of the periodic evaluations.
        tokens_per_second: steady-state throughput of this session (None if too short).
        compile_seconds: wall time of the first compiled call (tracing, compiling, running).
        warmup_seconds: wall time of the warm-up calls, the first included.
        train_seconds: wall time inside compiled calls.
        last_row: the last logged row.
    """

    steps: int
    start_step: int
    final_train_loss: float | None
    stop_reason: str
    evals: list[dict] = field(default_factory=list)
    tokens_per_second: float | None = None
    compile_seconds: float | None = None
    warmup_seconds: float | None = None
    train_seconds: float = 0.0
    last_row: dict | None = None


def fit(trainer: Trainer, iterator, plan: Plan, monitor: Monitor,
        evaluate: Callable[[], float | None] | None = None,
        checkpoints: Checkpoints | None = None, flops_per_token: float | None = None,
        peak_flops: float | None = None) -> FitResult:
    """Train from the trainer's current step to `plan.total_steps` (or an early stop).

    Args:
        trainer: the compiled steps (restored from a checkpoint when resuming).
        iterator: the training data iterator (restored with it).
        plan: when to log, evaluate, checkpoint and stop.
        monitor: progress, CSV and TensorBoard.
        evaluate: the eval loss of the current weights (every worker calls it).
        checkpoints: where to save (None: no checkpoints).
        flops_per_token: model training FLOPs per token position, for MFU (None: no MFU).
        peak_flops: the cluster's measured matmul FLOP/s.

    Returns:
        What the run measured.

    Raises:
        TrainingDiverged: a step's loss or gradient norm was NaN or Inf.
    """
    start = trainer.step
    result = FitResult(steps=start, start_step=start, final_train_loss=None,
                       stop_reason="budget")
    clock = _Clock(plan.tokens_per_step)
    if plan.patience is not None and (
            int(trainer.state.evals_without_improvement.numpy()) >= plan.patience):
        # Resumed from the checkpoint written when the run stopped early.
        result.stop_reason = "early_stopping"
    while result.steps < plan.total_steps and result.stop_reason == "budget":
        target = plan.next_stop(result.steps)
        began = time.perf_counter()
        out = trainer.run_steps(iterator, target - result.steps)
        clock.add(out["steps"], time.perf_counter() - began)
        if not out["finite"]:
            raise TrainingDiverged(_divergence_message(out, result.steps + out["steps"] + 1,
                                                       checkpoints))
        result.steps = trainer.step
        result.final_train_loss = float(out["loss"])
        if _due(result.steps, plan.log_every) or result.steps == plan.total_steps:
            result.last_row = _train_row(result.steps, out, clock, flops_per_token, peak_flops)
            monitor.train_row(result.last_row)
        if evaluate is not None and _due(result.steps, plan.eval_every):
            _periodic_eval(trainer, plan, monitor, evaluate, result)
        if checkpoints is not None and (_due(result.steps, plan.checkpoint_every)
                                        or result.stop_reason == "early_stopping"):
            checkpoints.save(result.steps)
    result.tokens_per_second = clock.steady_rate()
    result.compile_seconds, result.warmup_seconds = clock.compile_seconds, clock.warmup_seconds
    result.train_seconds = clock.seconds
    return result


def _train_row(step: int, out: dict, clock: _Clock, flops_per_token: float | None,
               peak_flops: float | None) -> dict:
    """The logged row of `step` (`out` is its compiled call's result)."""
    rate = clock.rate_since_last_row()
    mfu = rate * flops_per_token / peak_flops if flops_per_token and peak_flops else None
    return {"step": step, "loss": float(out["loss"]),
            "learning_rate": float(out["learning_rate"]),
            "grad_norm": float(out["grad_norm"]), "tokens_per_second": rate,
            "mfu": mfu, "elapsed_seconds": round(clock.seconds, 3)}


def _periodic_eval(trainer: Trainer, plan: Plan, monitor: Monitor,
                    evaluate: Callable[[], float | None], result: FitResult) -> None:
    """Evaluate at `result.steps`, log it, and stop the run when patience has run out."""
    loss = evaluate()
    stop = _early_stopping(trainer, loss, plan)
    result.evals.append({"step": result.steps, "loss": loss})
    monitor.eval_row(result.steps, loss, "; stopping early (no improvement in "
                     f"{plan.patience} evaluations)" if stop else "")
    if stop:
        result.stop_reason = "early_stopping"


def _due(step: int, every: int | None) -> bool:
    return bool(every) and step % every == 0


def _early_stopping(trainer: Trainer, loss: float | None, plan: Plan) -> bool:
    """Update the best eval loss; True when patience has run out."""
    if plan.patience is None or loss is None:
        return False
    state = trainer.state
    if loss < float(state.best_eval_loss.numpy()) - plan.min_delta:
        state.best_eval_loss.assign(loss)
        state.evals_without_improvement.assign(0)
        return False
    state.evals_without_improvement.assign_add(1)
    return int(state.evals_without_improvement.numpy()) >= plan.patience


def _divergence_message(out: dict, step: int, checkpoints: Checkpoints | None) -> str:
    what = (f"training loss is {float(out['loss'])}" if not math.isfinite(out["loss"])
            else f"gradient norm is {float(out['grad_norm'])}")
    message = (f"{what} at step {step} (learning rate {float(out['learning_rate']):.3g}); "
               "that update was not applied. ")
    latest = checkpoints.latest() if checkpoints is not None else None
    if latest is None:
        return message + "No checkpoint was written before it."
    return (message + f"The last good checkpoint (step {step_of(latest)}) is kept in "
            f"{checkpoints.directory}.")


class _Clock:
    """Time spent inside compiled calls: the first call, the warm-up, the steady state.

    Args:
        tokens_per_step: token positions per step.
    """

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.calls = 0
        self.steps = 0
        self.seconds = 0.0
        self.compile_seconds = self.warmup_seconds = None
        self._steady = [0, 0.0]
        self._last_row = (0, 0.0)

    def add(self, steps: int, seconds: float) -> None:
        """Record a compiled call that took `steps` steps in `seconds`."""
        self.calls += 1
        self.steps += steps
        self.seconds += seconds
        if self.calls == 1:
            self.compile_seconds = seconds
        if self.calls <= WARMUP_CALLS:
            self.warmup_seconds = self.seconds
        else:
            self._steady[0] += steps
            self._steady[1] += seconds

    def rate_since_last_row(self) -> float:
        """Tokens/s over the calls since the previous logged row (or the start); the next
        row's rate counts from here."""
        steps, seconds = self.steps - self._last_row[0], self.seconds - self._last_row[1]
        self._last_row = (self.steps, self.seconds)
        return steps * self.tokens_per_step / seconds if seconds > 0 else 0.0

    def steady_rate(self) -> float | None:
        """Tokens/s after the warm-up calls; None if there were none after them."""
        steps, seconds = self._steady
        return steps * self.tokens_per_step / seconds if steps else None
