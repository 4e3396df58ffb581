"""Learning-rate schedules: a linear warm-up, then constant, cosine, linear or 1/sqrt decay.

Keras calls a schedule with the optimizer's 0-based `iterations`, i.e. before the update
it is about to apply. The formulas here are in terms of the 1-based update number
`n = iterations + 1`, so the first update already gets `peak / warmup` (Keras'
`CosineDecay` with a warm-up gives the first update a learning rate of 0), and the last
update (`n = total_steps`) gets exactly the floor of a cosine or linear decay.
"""

from __future__ import annotations

import math

import keras
from keras import ops

SCHEDULES = ("constant", "cosine", "linear", "inverse_sqrt")


def learning_rate_at(n: float, *, kind: str, peak: float, warmup: int, total: int,
                     floor_ratio: float) -> float:
    """The learning rate of update `n` (1-based), in plain Python: the reference formula.

    Args:
        n: the update number, 1 for the first update.
        kind: one of `SCHEDULES`.
        peak: the learning rate at the end of the warm-up.
        warmup: warm-up updates (the rate rises linearly to `peak` at update `warmup`).
        total: the run's number of updates.
        floor_ratio: the decays never go below `peak * floor_ratio`.

    Returns:
        The learning rate.
    """
    if n <= warmup:
        return peak * n / warmup
    floor = peak * floor_ratio
    progress = min(max((n - warmup) / max(total - warmup, 1), 0.0), 1.0)
    if kind == "constant":
        return peak
    if kind == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return peak - (peak - floor) * progress
    return max(peak * math.sqrt(max(warmup, 1) / n), floor)


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate_at` as a Keras schedule of the optimizer's 0-based iteration count.

    Args:
        kind: one of `SCHEDULES`.
        peak: the learning rate at the end of the warm-up.
        warmup: warm-up updates.
        total: the run's number of updates.
        floor_ratio: the decay's floor as a fraction of `peak`.
    """

    def __init__(self, kind: str, peak: float, warmup: int, total: int, floor_ratio: float):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r} (one of {', '.join(SCHEDULES)})")
        self.kind = kind
        self.peak = float(peak)
        self.warmup = int(warmup)
        self.total = int(total)
        self.floor_ratio = float(floor_ratio)

    def __call__(self, step):
        n = ops.cast(step, "float32") + 1.0
        peak = ops.convert_to_tensor(self.peak, "float32")
        floor = peak * self.floor_ratio
        progress = ops.clip((n - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        if self.kind == "constant":
            decayed = peak
        elif self.kind == "cosine":
            decayed = floor + (peak - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.kind == "linear":
            decayed = peak - (peak - floor) * progress
        else:
            decayed = ops.maximum(peak * ops.sqrt(max(self.warmup, 1) / n), floor)
        if self.warmup == 0:
            return decayed
        return ops.where(n <= self.warmup, peak * n / self.warmup, decayed)

    def get_config(self):
        return {"kind": self.kind, "peak": self.peak, "warmup": self.warmup,
                "total": self.total, "floor_ratio": self.floor_ratio}


def make_schedule(train_config, total_steps: int) -> WarmupDecay:
    """The schedule `train.schedule` asks for, over a run of `total_steps` updates.

    Args:
        train_config: `pipeline.core.config.TrainConfig`.
        total_steps: the run's number of updates (from `train.steps` / `train.max_tokens`).

    Returns:
        The schedule.
    """
    return WarmupDecay(train_config.schedule, train_config.learning_rate,
                       train_config.warmup_steps, total_steps,
                       train_config.min_learning_rate_ratio)
