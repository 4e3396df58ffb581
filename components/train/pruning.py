"""Magnitude pruning during training (`train.prune`): TF-MOT's recipe for the custom loop.

Keras 3 has no model-optimization toolkit, so this is the small part of it the trainer
needs. Which weights: the kernels of the transformer blocks' dense projections (attention
query, key, value and output; the MLP), i.e. every variable named `kernel` inside a
`transformer_layer_<i>` block. Embeddings, norms, biases and the output head are left dense.

Schedule (TF-MOT's `PolynomialDecay`): at step t in [begin, end] the sparsity is
`target + (initial - target) * (1 - (t - begin) / (end - begin)) ** power`. Masks are
recomputed after the optimizer steps `begin + k * frequency` and after step `end` itself
(so the target is reached whatever the frequency); each kernel loses exactly
`round(sparsity * size)` of its smallest-magnitude weights. Masks are fixed after `end`.

After every applied optimizer step each kernel is multiplied by its mask, so a pruned
weight is exactly zero whenever the loop hands control back (whatever the optimizer's
momentum did to it). The masks are checkpointed, so a resumed run keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from pipeline.core.errors import ConfigError

BLOCK_PREFIX = "transformer_layer_"


@dataclass(frozen=True)
class Schedule:
    """When and how much to prune (steps count applied optimizer steps, from 1).

    Attributes:
        target: final sparsity of each pruned kernel.
        initial: sparsity at `begin`.
        begin, end: the steps the schedule starts and ends at.
        frequency: steps between mask updates.
        power: the polynomial's exponent.
    """

    target: float
    initial: float
    begin: int
    end: int
    frequency: int
    power: float

    def sparsity(self, step: int) -> float:
        """The scheduled sparsity at `step` (0 before `begin`)."""
        if step < self.begin:
            return 0.0
        progress = min(1.0, (step - self.begin) / (self.end - self.begin))
        return self.target + (self.initial - self.target) * (1.0 - progress) ** self.power

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed after optimizer step `step`."""
        inside = self.begin <= step <= self.end
        return inside and ((step - self.begin) % self.frequency == 0 or step == self.end)


def make_schedule(prune_config, total_steps: int) -> Schedule | None:
    """The schedule of `train.prune` for a run of `total_steps` (None: pruning is off).

    Raises:
        ConfigError: the schedule does not fit in the run.
    """
    if prune_config.target_sparsity is None:
        return None
    end = prune_config.end_step if prune_config.end_step is not None else total_steps
    if end > total_steps:
        raise ConfigError("train.prune.end_step", f"must be <= the run's {total_steps} steps, "
                          f"got {end}")
    if prune_config.begin_step >= end:
        raise ConfigError("train.prune.begin_step", f"must be below the schedule's end step "
                          f"{end}, got {prune_config.begin_step}")
    return Schedule(target=prune_config.target_sparsity, initial=prune_config.initial_sparsity,
                    begin=prune_config.begin_step, end=end, frequency=prune_config.frequency,
                    power=prune_config.power)


def prunable_variables(model) -> list:
    """The kernels that are pruned: `kernel` variables (rank >= 2) inside transformer blocks."""
    return [v for v in model.trainable_variables
            if v.path.split("/")[-1] == "kernel" and len(v.shape) >= 2
            and any(part.startswith(BLOCK_PREFIX) for part in v.path.split("/"))]


def magnitude_mask(weights, sparsity):
    """1.0 except at the `round(sparsity * size)` smallest |weights| (ties in index order).

    Args:
        weights: a float tensor.
        sparsity: a float scalar in [0, 1).

    Returns:
        A float mask of `weights`' shape and dtype.
    """
    flat = tf.reshape(tf.abs(weights), [-1])
    size = tf.size(flat)
    count = tf.cast(tf.round(tf.cast(sparsity, tf.float64) * tf.cast(size, tf.float64)), tf.int32)
    order = tf.argsort(flat, stable=True)
    mask = tf.tensor_scatter_nd_update(tf.ones([size], weights.dtype), order[:count, None],
                                       tf.zeros([count], weights.dtype))
    return tf.reshape(mask, tf.shape(weights))


class _Masks(tf.Module):
    """The masks alone, so a checkpoint of them holds no second copy of the weights."""

    def __init__(self, shapes_and_dtypes):
        super().__init__(name="pruning_masks")
        self.masks = [tf.Variable(tf.ones(shape, dtype), trainable=False, name=f"mask_{i}")
                      for i, (shape, dtype) in enumerate(shapes_and_dtypes)]


class Pruner:
    """Masks for the prunable kernels of `model`, updated on `schedule` inside the train step.

    Args:
        model: the model being trained (built under `strategy.scope()`).
        schedule: the `Schedule`.
        strategy: the tf.distribute strategy (masks are created under its scope).
    """

    def __init__(self, model, schedule: Schedule, strategy: tf.distribute.Strategy):
        self.schedule = schedule
        self.strategy = strategy
        self.targets = prunable_variables(model)
        if not self.targets:
            raise ConfigError("train.prune.target_sparsity", "this model has no dense kernels "
                              "inside transformer blocks to prune")
        with strategy.scope():
            self.state = _Masks([(tuple(v.shape), v.dtype) for v in self.targets])

    @property
    def masks(self) -> list:
        """The mask variables, in the order of `targets`."""
        return self.state.masks

    def _sparsity(self, step):
        s = self.schedule
        step = tf.cast(step, tf.float64)
        progress = tf.clip_by_value((step - s.begin) / (s.end - s.begin), 0.0, 1.0)
        return s.target + (s.initial - s.target) * (1.0 - progress) ** s.power

    def _updates_at(self, step):
        s = self.schedule
        step = tf.cast(step, tf.int64)
        periodic = tf.equal(tf.math.floormod(step - s.begin, s.frequency), 0)
        return tf.logical_and(tf.logical_and(step >= s.begin, step <= s.end),
                              tf.logical_or(periodic, tf.equal(step, s.end)))

    def after_step(self, step) -> None:
        """Update the masks if `step` is due, then zero the pruned weights.

        Call in cross-replica context inside the compiled train step, right after the
        optimizer's update (`loop.Trainer` does).

        Args:
            step: the number of optimizer steps applied so far (a tensor).
        """
        if self._updates_at(step):
            sparsity = self._sparsity(step)
            for variable, mask in zip(self.targets, self.masks):
                mask.assign(magnitude_mask(variable.value, sparsity))
        for variable, mask in zip(self.targets, self.masks):
            self.strategy.extended.update(variable.value, _apply_mask, args=(mask,))

    def measure(self) -> dict:
        """The measured sparsity of the pruned kernels, from their current weights.

        Returns:
            {"measured_sparsity" (zeros over all pruned weights), "pruned_weights",
            "per_variable" {path: fraction of zeros}}.
        """
        zeros = total = 0
        per_variable = {}
        for variable in self.targets:
            values = np.asarray(variable.value)
            count = int(np.count_nonzero(values == 0))
            per_variable[variable.path] = count / values.size
            zeros += count
            total += values.size
        return {"measured_sparsity": zeros / total, "pruned_weights": total,
                "per_variable": per_variable}

    def record(self, model) -> dict:
        """What `train_summary.json` says about pruning.

        Args:
            model: the trained model (for the fraction of zeros among all its parameters).
        """
        s = self.schedule
        everything = [np.asarray(v) for v in model.get_weights()]
        model_zeros = sum(int(np.count_nonzero(w == 0)) for w in everything)
        return {"target_sparsity": s.target,
                "schedule": {"initial_sparsity": s.initial, "begin_step": s.begin,
                             "end_step": s.end, "frequency": s.frequency, "power": s.power},
                "which": "kernels of the transformer blocks' dense projections (attention "
                         "and MLP); embeddings, norms, biases and the output head are dense",
                **self.measure(),
                "model_zeros_fraction": model_zeros / sum(w.size for w in everything)}


def _apply_mask(variable, mask):
    return variable.assign(variable * mask)
