"""Every optimizer and schedule by name: the rates follow the formulas, and each one makes
the loss fall on a tiny overfit set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.core.config import TrainConfig
from tests.components.train.helpers import make_trainer, repeat


def _overfit_batch():
    rng = np.random.default_rng(0)
    segments = np.repeat([[1] * 20 + [2] * 12], 4, axis=0).astype(np.int32)
    tokens = rng.integers(5, 384, segments.shape).astype(np.int32)
    return {"token_ids": tokens, "segment_ids": segments}


# Each optimizer once and each schedule at least once; learning rates suit each optimizer.
CASES = [
    ("sgd", "constant", 1.0, {}),
    ("momentum", "linear", 0.3, {"nesterov": True}),
    ("rmsprop", "cosine", 3e-3, {}),
    ("adam", "inverse_sqrt", 1e-2, {}),
    ("adamw", "cosine", 1e-2, {}),
    ("lion", "linear", 5e-3, {}),
    ("adafactor", "constant", 1e-1, {}),
]


@pytest.mark.parametrize("optimizer, schedule, learning_rate, extra", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_loss_falls_on_a_tiny_overfit_set(optimizer, schedule, learning_rate, extra):
    import tensorflow as tf

    steps = 40
    config = TrainConfig(steps=steps, batch_size=4, optimizer=optimizer, schedule=schedule,
                         learning_rate=learning_rate, warmup_steps=4, **extra)
    trainer = make_trainer(tf.distribute.get_strategy(), config)
    inner = getattr(trainer.optimizer, "inner_optimizer", trainer.optimizer)
    assert type(inner).__name__.lower() == {"momentum": "sgd"}.get(optimizer, optimizer)
    iterator = iter(repeat(_overfit_batch()))
    first = trainer.run_steps(iterator, 1)
    last = trainer.run_steps(iterator, steps - 1)
    assert first["finite"] and last["finite"] and trainer.step == steps
    assert first["loss"] == pytest.approx(math.log(384), rel=0.05)
    assert last["loss"] < 0.75 * first["loss"], (first["loss"], last["loss"])


def test_optimizer_settings_reach_keras():
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    momentum = make_trainer(strategy, TrainConfig(steps=10, optimizer="momentum", momentum=0.8,
                                                  nesterov=True)).optimizer
    assert momentum.momentum == 0.8 and momentum.nesterov and momentum.weight_decay is None
    adamw = make_trainer(strategy, TrainConfig(steps=10)).optimizer
    assert (adamw.beta_1, adamw.beta_2, adamw.weight_decay) == (0.9, 0.95, 0.01)
    lion = make_trainer(strategy, TrainConfig(steps=10, optimizer="lion")).optimizer
    assert (lion.beta_2, lion.weight_decay) == (0.99, 0.01)
    adam = make_trainer(strategy, TrainConfig(steps=10, optimizer="adam", beta_2=0.98,
                                              weight_decay=0.1)).optimizer
    assert (adam.beta_2, adam.weight_decay) == (0.98, 0.1)


def _reference(n, kind, peak, warmup, total, floor_ratio):
    """The schedules written out independently of components/train/schedules.py."""
    if warmup and n <= warmup:
        return peak * n / warmup
    floor = peak * floor_ratio
    t = (n - warmup) / (total - warmup)
    return {"constant": peak,
            "cosine": floor + (peak - floor) * (1 + math.cos(math.pi * min(t, 1.0))) / 2,
            "linear": peak - (peak - floor) * min(t, 1.0),
            "inverse_sqrt": max(peak * math.sqrt(max(warmup, 1) / n), floor)}[kind]


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "inverse_sqrt"])
@pytest.mark.parametrize("warmup", [0, 10])
def test_schedule_values_follow_the_formula(kind, warmup):
    from components.train.schedules import WarmupDecay, learning_rate_at

    schedule = WarmupDecay(kind, 1e-3, warmup, 110, 0.1)
    for iteration in (0, 1, 4, 9, 10, 11, 35, 60, 108, 109, 200):
        n = iteration + 1  # Keras passes the update's 0-based index
        expected = _reference(n, kind, 1e-3, warmup, 110, 0.1)
        assert float(schedule(iteration)) == pytest.approx(expected, rel=1e-5)
        assert learning_rate_at(n, kind=kind, peak=1e-3, warmup=warmup, total=110,
                                floor_ratio=0.1) == pytest.approx(expected, rel=1e-12)
    assert float(schedule(0)) > 0, "the first update must get a non-zero learning rate"
    if kind in ("cosine", "linear"):
        assert float(schedule(109)) == pytest.approx(1e-4, rel=1e-5)  # the floor, last update
