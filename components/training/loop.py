"""The custom training loop: one code path for every tf.distribute strategy.

`model.fit` fails under MultiWorkerMirroredStrategy on this stack (DESIGN.md section 6),
so the step is written out: the batch is split by `experimental_distribute_dataset`, each
replica computes the summed token NLL and its gradient, the gradients are all-reduced and
divided by the global count of target tokens (a token-weighted mean over the global
batch, whatever the replica count), clipped by their global norm and applied with the
Keras optimizer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import tensorflow as tf

from models.masking import token_nll

# Steps excluded from the steady-state throughput: the first traces and compiles the step,
# the next ones still warm caches and thread pools.
WARMUP_STEPS = 3


@dataclass
class TrainResult:
    """What a training run measured.

    Attributes:
        steps: optimizer steps taken.
        tokens_seen: token positions consumed (steps * global batch * sequence length).
        target_tokens_seen: of those, positions with a real next-token target.
        final_train_loss: mean token NLL (nats) of the last step.
        tokens_per_second: steady-state throughput after the warm-up steps (None if the
            run was too short to have any).
        compile_seconds: wall time of the first step (tracing, compilation, first run).
        warmup_seconds: wall time of all warm-up steps, the first included.
        log: one row per logged step (step, loss, learning_rate, grad_norm,
            tokens_per_second, elapsed_seconds).
    """

    steps: int
    tokens_seen: int
    target_tokens_seen: int
    final_train_loss: float
    tokens_per_second: float | None
    compile_seconds: float
    warmup_seconds: float
    log: list[dict] = field(default_factory=list)


class Trainer:
    """Compiled train and eval steps for one model, optimizer and strategy.

    Args:
        model: a Keras model taking {token_ids, segment_ids} and returning logits, built
            under `strategy.scope()`.
        optimizer: its optimizer, built under the same scope.
        strategy: the tf.distribute strategy.
        objective: turns a batch into (inputs, targets, weights); `models.objectives`.
        seed: the run's seed; objectives that corrupt inputs derive per-step seeds from it.
        clip_norm: global-norm clipping threshold, or None.
        jit_compile: compile each replica's forward and backward pass with XLA.
    """

    def __init__(self, model, optimizer, strategy: tf.distribute.Strategy, objective,
                 seed: int, clip_norm: float | None, jit_compile: bool = False):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.objective = objective
        self.seed = seed
        self.clip_norm = clip_norm
        self._grads = tf.function(self._loss_and_grads, jit_compile=jit_compile)
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def _step_seed(self):
        """A stateless seed per optimizer step, so a resumed run corrupts inputs identically."""
        return tf.stack([tf.constant(self.seed, tf.int32),
                         tf.cast(self.optimizer.iterations, tf.int32)])

    def _loss_and_grads(self, batch):
        inputs, targets, weights = self.objective.prepare(batch, self._step_seed())
        with tf.GradientTape() as tape:
            logits = self.model(inputs, training=True)
            nll_sum = tf.reduce_sum(token_nll(logits, targets) * weights)
        grads = tape.gradient(nll_sum, self.model.trainable_variables)
        # Embedding gradients arrive as IndexedSlices; dense ones all-reduce and scale simply.
        return nll_sum, tf.reduce_sum(weights), [tf.convert_to_tensor(g) for g in grads]

    def _replica_step(self, batch):
        context = tf.distribute.get_replica_context()
        nll_sum, count, grads = self._grads(batch)
        nll_sum, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [nll_sum, count])
        count = tf.maximum(count, 1.0)
        grads = [g / count for g in context.all_reduce(tf.distribute.ReduceOp.SUM, grads)]
        if self.clip_norm:
            grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
        else:
            norm = tf.linalg.global_norm(grads)
        # Keras' apply_gradients sums gradients over replicas once more: give it a share.
        replicas = float(self.strategy.num_replicas_in_sync)
        grads = [g / replicas for g in grads]
        learning_rate = tf.convert_to_tensor(self.optimizer.learning_rate)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return nll_sum / count, norm, count, learning_rate

    def _train_step(self, iterator):
        outputs = self.strategy.run(self._replica_step, args=(next(iterator),))
        # Every replica holds the same all-reduced values.
        return [self.strategy.experimental_local_results(value)[0] for value in outputs]

    def _replica_eval(self, batch):
        inputs, targets, weights = self.objective.prepare(
            batch, tf.constant([self.seed, -1], tf.int32))
        logits = self.model(inputs, training=False)
        return tf.reduce_sum(token_nll(logits, targets) * weights), tf.reduce_sum(weights)

    def _eval_step(self, batch):
        nll_sum, count = self.strategy.run(self._replica_eval, args=(batch,))
        return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, nll_sum, axis=None),
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(self, dataset: tf.data.Dataset) -> float | None:
        """Token-weighted mean NLL (nats) over `dataset`; None when it has no targets."""
        total, count = 0.0, 0.0
        for batch in self.strategy.experimental_distribute_dataset(dataset):
            nll_sum, tokens = self.eval_step(batch)
            total += float(nll_sum)
            count += float(tokens)
        return total / count if count else None

    def fit(self, dataset: tf.data.Dataset, steps: int, batch_tokens: int, log_every: int,
            log: Callable[[str], None]) -> TrainResult:
        """Train for `steps` optimizer steps on an endless dataset of global batches.

        Args:
            dataset: batches of {token_ids, segment_ids}.
            steps: optimizer steps to take.
            batch_tokens: token positions per global batch (batch size * L).
            log_every: log a line every this many steps (and at the last step).
            log: where progress lines go (stderr).

        Returns:
            The measurements of the run.
        """
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        clock = _Clock(steps, batch_tokens)
        rows, targets = [], 0.0
        for step in range(1, steps + 1):
            loss, norm, count, learning_rate = self.train_step(iterator)
            targets += float(count)  # also waits for the step, so the clock reads true times
            clock.tick(step)
            if step % log_every == 0 or step == steps:
                loss_value = float(loss)
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"training loss is {loss_value} at step {step}")
                rate = clock.interval_rate(step)
                rows.append({"step": step, "loss": loss_value,
                             "learning_rate": float(learning_rate), "grad_norm": float(norm),
                             "tokens_per_second": rate, "elapsed_seconds": clock.elapsed()})
                log(f"step {step}/{steps}  loss {loss_value:.4f}  "
                    f"lr {float(learning_rate):.3g}  tokens/s {rate:,.0f}")
        return TrainResult(steps=steps, tokens_seen=steps * batch_tokens,
                           target_tokens_seen=int(targets), final_train_loss=float(loss),
                           tokens_per_second=clock.steady_rate(),
                           compile_seconds=clock.compile_seconds,
                           warmup_seconds=clock.warmup_seconds, log=rows)


class _Clock:
    """Wall times of a run: the first step (compile), the warm-up, and the steady state.

    Args:
        steps: steps the run will take.
        batch_tokens: token positions per step.
    """

    def __init__(self, steps: int, batch_tokens: int):
        self.steps = steps
        self.batch_tokens = batch_tokens
        self.warmup = min(WARMUP_STEPS, steps - 1)
        self.start = time.perf_counter()
        self.compile_seconds = self.warmup_seconds = None
        self._steady_start = None
        self._now = self.start
        self._last = (0, self.start)

    def tick(self, step: int) -> None:
        """Record that `step` (1-based) has finished."""
        self._now = time.perf_counter()
        if step == 1:
            self.compile_seconds = self.warmup_seconds = self._now - self.start
        if step == self.warmup:
            self.warmup_seconds, self._steady_start = self._now - self.start, self._now

    def elapsed(self) -> float:
        return self._now - self.start

    def interval_rate(self, step: int) -> float:
        """Tokens/s since the previous call (or the start)."""
        last_step, last_time = self._last
        self._last = (step, self._now)
        return (step - last_step) * self.batch_tokens / (self._now - last_time)

    def steady_rate(self) -> float | None:
        """Tokens/s after the warm-up steps; None if the run had none after them."""
        if self._steady_start is None or self.steps <= self.warmup:
            return None
        return (self.steps - self.warmup) * self.batch_tokens / (self._now - self._steady_start)
