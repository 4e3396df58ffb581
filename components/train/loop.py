"""The compiled training and eval steps: one code path for every tf.distribute strategy.

`model.fit` fails under MultiWorkerMirroredStrategy on this stack (DESIGN.md section 6),
so the step is written out. Every worker reads the same global batch from an ordinary
(checkpointable) tf.data iterator and each replica takes its rows of it. A replica runs
its rows as `grad_accum_steps` micro-batches, summing the token NLL and its gradient; the
sums are all-reduced once and divided by the global count of target tokens (a
token-weighted mean over the global batch, whatever the replica count and accumulation),
clipped by their global norm and applied with the Keras optimizer, whose own second
all-reduce is switched off (`optimization._PreReducedGradients`).

`run_steps` runs up to `steps_per_execution` optimizer steps in one `tf.function` call,
with no host round trip in between. A step whose loss (or, without loss scaling, gradient
norm) is not finite is not applied: the call stops there and reports it.
"""

from __future__ import annotations

import tensorflow as tf

from models.masking import token_nll

# Stateless-seed stream of the eval batches (training steps use the step number).
_EVAL_STREAM = -1


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
        seed: the run's seed; objectives that corrupt inputs get stateless per-step seeds
            derived from it, so a resumed run corrupts its inputs identically.
        clip_norm: global-norm clipping threshold, or None.
        grad_accum_steps: micro-batches per replica per step.
        jit_compile: compile each micro-batch's forward and backward pass with XLA.
        loss_scaling: scale the loss by the optimizer's dynamic scale (mixed_float16).
        distiller: a `distill.Distiller`: the gradient is that of its per-token loss (the
            reported loss stays the NLL); None: plain NLL.
        pruner: a `pruning.Pruner`, called after every applied update; None: no pruning.
        freezer: a `tasks.BackboneFreezer`: while it holds, only the head is trained;
            None: every trainable variable is.
    """

    def __init__(self, model, optimizer, strategy: tf.distribute.Strategy, objective, seed: int,
                 clip_norm: float | None, grad_accum_steps: int = 1, jit_compile: bool = False,
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
        self._grads = tf.function(self._loss_and_grads, jit_compile=jit_compile)
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

    def _loss_and_grads(self, batch, seed, scale):
        inputs, targets, weights = self.objective.prepare(batch, seed)
        with tf.GradientTape() as tape:
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
