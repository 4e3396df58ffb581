"""The host loop: when calls end, resuming from a checkpoint, early stopping (divergence:
`tests/components/test_train.py`)."""

from __future__ import annotations

import csv

import numpy as np

from pipeline.core.config import TrainConfig
from tests.components.train.helpers import make_trainer, weights
from tests.components.train.test_loop import _stream


def _default():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def test_calls_end_at_every_step_that_must_be_logged_evaluated_or_saved():
    from components.train.fit import Plan

    plan = Plan(total_steps=25, tokens_per_step=1, steps_per_execution=8, log_every=10,
                eval_every=6, checkpoint_every=7)
    stops, step = [], 0
    while step < plan.total_steps:
        step = plan.next_stop(step)
        stops.append(step)
    assert stops == [6, 7, 10, 12, 14, 18, 20, 21, 24, 25]
    assert Plan(total_steps=20, tokens_per_step=1, steps_per_execution=8,
                log_every=10).next_stop(0) == 8


def _checkpointed(tmp_path, config, data_seeds):
    from components.train.checkpoints import Checkpoints

    trainer = make_trainer(_default(), config)
    iterator = iter(_stream(data_seeds).shuffle(16, seed=3))
    checkpoints = Checkpoints(str(tmp_path), {"model": trainer.model,
                                              "optimizer": trainer.optimizer,
                                              "state": trainer.state, "iterator": iterator},
                              keep=2)
    return trainer, iterator, checkpoints


def test_resume_from_a_checkpoint_continues_exactly(tmp_path):
    from components.train.fit import Plan, fit
    from components.train.monitor import Monitor

    config = TrainConfig(steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=2)
    plan = Plan(total_steps=12, tokens_per_step=256, steps_per_execution=4, log_every=3,
                checkpoint_every=3)
    lines = []
    trainer, iterator, checkpoints = _checkpointed(tmp_path / "a", config, [1, 2, 3, 4])
    whole = fit(trainer, iterator, plan, Monitor(str(tmp_path / "logs_a"), 12, lines.append),
                checkpoints=checkpoints)
    expected = weights(trainer)
    assert sorted(p.name for p in (tmp_path / "a").glob("*.index")) == [
        "ckpt-12.index", "ckpt-9.index"]  # keep=2

    # An interrupted run: 7 steps (last checkpoint at 6), then a fresh process restores.
    trainer, iterator, checkpoints = _checkpointed(tmp_path / "b", config, [1, 2, 3, 4])
    fit(trainer, iterator, Plan(**{**plan.__dict__, "total_steps": 7}),
        Monitor(str(tmp_path / "logs_b"), 12, lines.append), checkpoints=checkpoints)
    trainer, iterator, checkpoints = _checkpointed(tmp_path / "b", config, [1, 2, 3, 4])
    restored = checkpoints.restore_latest()
    assert restored.endswith("ckpt-6") and trainer.step == 6
    resumed = fit(trainer, iterator, plan, Monitor(str(tmp_path / "logs_b"), 12, lines.append,
                                                   resume_step=6), checkpoints=checkpoints)
    assert resumed.start_step == 6 and resumed.steps == 12
    assert resumed.final_train_loss == whole.final_train_loss
    for a, b in zip(expected, weights(trainer)):
        np.testing.assert_array_equal(a, b)
    with open(tmp_path / "logs_b" / "train_log.csv") as f:
        logged = [int(r["step"]) for r in csv.DictReader(f)]
    assert logged == [3, 6, 9, 12], "rows after the resumed step are replaced, not repeated"


def test_early_stopping_after_patience_evaluations_without_improvement():
    from components.train.fit import Plan, fit
    from components.train.monitor import Monitor

    trainer = make_trainer(_default(), TrainConfig(steps=30, batch_size=8))
    losses = iter([3.0, 2.0, 2.5, 1.995, 2.1, 9.0])
    plan = Plan(total_steps=30, tokens_per_step=256, steps_per_execution=5, log_every=5,
                eval_every=5, patience=3, min_delta=0.01)
    lines = []
    result = fit(trainer, iter(_stream([1])), plan, Monitor(None, 30, lines.append),
                 evaluate=lambda: next(losses))
    # 2.0 is the best; 2.5, 1.995 (not better by 0.01) and 2.1 use up the patience.
    assert result.stop_reason == "early_stopping" and result.steps == 25
    assert [e["loss"] for e in result.evals] == [3.0, 2.0, 2.5, 1.995, 2.1]
    assert float(trainer.state.best_eval_loss.numpy()) == 2.0
    assert "stopping early" in lines[-1]
