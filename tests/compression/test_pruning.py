"""Magnitude pruning: the schedule, the masks, and masked weights staying zero in training."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.config import ModelConfig, PruneConfig, TrainConfig
from pipeline.core.errors import ConfigError

SCHEDULE = dict(target=0.6, initial=0.1, begin=4, end=16, frequency=5, power=3.0)


def _reference_sparsity(step: int) -> float:
    """TF-MOT's PolynomialDecay written out by hand (0 before begin, fixed after end)."""
    s = SCHEDULE
    if step < s["begin"]:
        return 0.0
    progress = min(1.0, (step - s["begin"]) / (s["end"] - s["begin"]))
    return s["target"] + (s["initial"] - s["target"]) * (1 - progress) ** s["power"]


def test_schedule_is_tf_mot_polynomial_decay_and_always_reaches_the_target():
    from components.train.pruning import Schedule, make_schedule

    schedule = Schedule(**SCHEDULE)
    for step in range(25):
        assert schedule.sparsity(step) == pytest.approx(_reference_sparsity(step), abs=1e-12)
    # Every `frequency` steps from `begin`, plus `end` itself (16 - 4 is not a multiple of 5).
    assert [t for t in range(25) if schedule.updates_at(t)] == [4, 9, 14, 16]
    assert schedule.sparsity(16) == schedule.sparsity(99) == 0.6
    config = PruneConfig(target_sparsity=0.5, frequency=10)
    assert make_schedule(config, 40).end == 40 and make_schedule(PruneConfig(), 40) is None
    with pytest.raises(ConfigError, match="'train.prune.end_step': must be <= the run's 30"):
        make_schedule(PruneConfig(target_sparsity=0.5, end_step=40), 30)
    with pytest.raises(ConfigError, match="'train.prune.begin_step': must be below"):
        make_schedule(PruneConfig(target_sparsity=0.5, begin_step=30), 30)


def test_magnitude_mask_zeroes_exactly_the_smallest_weights():
    from components.train.pruning import magnitude_mask

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 7)).astype(np.float32)
    for sparsity in (0.0, 0.25, 0.5, 0.99):
        mask = np.asarray(magnitude_mask(weights, sparsity))
        count = round(sparsity * weights.size)
        smallest = np.argsort(np.abs(weights).ravel(), kind="stable")[:count]
        expected = np.ones(weights.size, np.float32)
        expected[smallest] = 0.0
        np.testing.assert_array_equal(mask.ravel(), expected)


@pytest.mark.parametrize("family", ["gpt", "llama", "bert"])
def test_only_the_blocks_dense_kernels_are_pruned(family):
    from components.train.pruning import prunable_variables
    from models.factory import build_model
    from pipeline.core.config import TaskConfig

    model = build_model(ModelConfig(family=family, num_layers=2, hidden_dim=16, num_heads=2,
                                    max_sequence_length=32), TaskConfig(), 64)
    names = sorted(v.path for v in prunable_variables(model))
    per_block = {"gpt": 6, "llama": 7, "bert": 6}[family]
    assert len(names) == 2 * per_block
    assert all(n.startswith("transformer_layer_") and n.endswith("/kernel") for n in names)
    assert not any(word in n for n in names for word in ("embedding", "norm", "bias", "head"))


def _trainer_with_pruner(schedule_kwargs: dict, steps: int):
    from components.train.pruning import Pruner, Schedule
    from components.train.strategy import make_strategy
    from tests.components.train.helpers import make_trainer

    strategy, _ = make_strategy("default")
    config = TrainConfig(steps=steps, batch_size=8, learning_rate=3e-2, warmup_steps=0)
    trainer = make_trainer(strategy, config)
    trainer.pruner = Pruner(trainer.model, Schedule(**schedule_kwargs), strategy)
    return trainer


def _batch():
    rng = np.random.default_rng(1)
    segments = np.repeat([[1] * 20 + [2] * 12], 8, axis=0).astype(np.int32)
    return {"token_ids": rng.integers(5, 384, segments.shape).astype(np.int32),
            "segment_ids": segments}


def test_training_follows_the_schedule_and_pruned_weights_stay_exactly_zero():
    from tests.components.train.helpers import repeat

    trainer = _trainer_with_pruner(SCHEDULE, 30)
    pruner = trainer.pruner
    iterator = iter(repeat(_batch()))
    for step in range(1, 17):
        trainer.run_steps(iterator, 1)
        last_update = max(t for t in (4, 9, 14, 16) if t <= step) if step >= 4 else None
        for variable in pruner.targets:
            values = np.asarray(variable.value)
            expected = 0 if last_update is None else round(
                _reference_sparsity(last_update) * values.size)
            assert np.count_nonzero(values == 0) == expected, (step, variable.path)
    zero_positions = [np.asarray(v.value) == 0 for v in pruner.targets]
    before = [np.asarray(v.value).copy() for v in pruner.targets]
    # Past the end the masks are fixed: more steps (several per compiled call) move the
    # other weights, while the pruned ones are exactly zero after every optimizer step.
    trainer.run_steps(iterator, 6)
    trainer.run_steps(iterator, 8)
    for variable, zeros, old in zip(pruner.targets, zero_positions, before):
        values = np.asarray(variable.value)
        np.testing.assert_array_equal(values == 0, zeros)
        assert np.abs(values - old)[~zeros].max() > 0
    measured = pruner.measure()
    assert measured["measured_sparsity"] == pytest.approx(
        sum(round(0.6 * v.value.shape.num_elements()) for v in pruner.targets)
        / measured["pruned_weights"])
    assert set(measured["per_variable"]) == {v.path for v in pruner.targets}


def test_without_a_due_step_no_weight_is_touched():
    from tests.components.train.helpers import repeat

    trainer = _trainer_with_pruner({**SCHEDULE, "begin": 10, "end": 20}, 30)
    trainer.run_steps(iter(repeat(_batch())), 9)
    assert all(np.count_nonzero(np.asarray(v.value) == 0) == 0 for v in trainer.pruner.targets)
    assert all(np.all(np.asarray(m) == 1) for m in trainer.pruner.masks)


@pytest.mark.slow
def test_distilling_and_pruning_under_mirrored_matches_the_default_strategy():
    import json
    import subprocess
    import sys

    process = subprocess.run([sys.executable, "-m", "tests.compression.mirrored_check"],
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout)
    default, mirrored = result["default"], result["mirrored"]
    assert (default["replicas"], mirrored["replicas"]) == (1, 2)
    np.testing.assert_allclose(mirrored["losses"], default["losses"], rtol=1e-4)
    for a, b in zip(default["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), atol=1e-5)
    for copies in mirrored["kernels"]:
        first, second = (np.array(c) for c in copies)
        np.testing.assert_array_equal(first == 0, second == 0)
        assert np.mean(first == 0) == 0.5
