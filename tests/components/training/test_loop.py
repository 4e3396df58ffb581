"""The custom training loop: the loss it optimizes, that it learns, and that the global batch
means the same thing under every strategy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from pipeline.config import TrainConfig
from tests.components.training.helpers import make_trainer, repeat
from tests.models.lm_data import env, reference_nll, reference_targets


def _batch(seed: int, batch: int = 8, length: int = 32):
    rng = np.random.default_rng(seed)
    segments = np.zeros((batch, length), np.int32)
    for row in segments:
        cut, end = sorted(rng.choice(np.arange(2, length), size=2, replace=False))
        row[:cut], row[cut:end] = 1, 2
    tokens = np.where(segments > 0, rng.integers(5, 384, segments.shape), 0).astype(np.int32)
    return {"token_ids": tokens, "segment_ids": segments}


def _numpy_loss(model, batch) -> float:
    logits = np.asarray(model(batch, training=False))
    targets, weights = reference_targets(batch["token_ids"], batch["segment_ids"])
    return float((reference_nll(logits, targets) * weights).sum() / weights.sum())


def test_step_loss_is_the_token_weighted_mean_over_valid_targets():
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    trainer = make_trainer(strategy, TrainConfig(steps=10, batch_size=8))
    batch = _batch(1)
    expected = _numpy_loss(trainer.model, batch)
    loss, norm, count, learning_rate = trainer.train_step(iter(repeat(batch)))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(count) == reference_targets(batch["token_ids"], batch["segment_ids"])[1].sum()
    assert 0 < float(norm) and float(learning_rate) == pytest.approx(1e-3)


def test_eval_loss_matches_numpy_over_uneven_batches():
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    trainer = make_trainer(strategy, TrainConfig(steps=10, batch_size=8))
    batches = [_batch(2, batch=8), _batch(3, batch=3)]
    dataset = tf.data.Dataset.from_tensor_slices(
        {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}).batch(8)
    nll = count = 0.0
    for batch in batches:
        logits = np.asarray(trainer.model(batch))
        targets, weights = reference_targets(batch["token_ids"], batch["segment_ids"])
        nll += (reference_nll(logits, targets) * weights).sum()
        count += weights.sum()
    assert trainer.evaluate(dataset) == pytest.approx(nll / count, rel=1e-5)


def test_loss_falls_on_a_tiny_overfit_set():
    import tensorflow as tf

    config = TrainConfig(steps=60, batch_size=8, learning_rate=1e-2, warmup_steps=5,
                         log_every=20)
    trainer = make_trainer(tf.distribute.get_strategy(), config)
    lines = []
    result = trainer.fit(repeat(_batch(4)), config.steps, 8 * 32, config.log_every, lines.append)
    first = math.log(384)
    assert result.final_train_loss < 0.5 * first
    assert [row["step"] for row in result.log] == [20, 40, 60]
    assert result.log[0]["loss"] > result.log[-1]["loss"]
    assert len(lines) == 3 and lines[-1].startswith("step 60/60")
    assert result.tokens_seen == 60 * 8 * 32 and result.tokens_per_second > 0
    assert result.compile_seconds <= result.warmup_seconds


def test_same_seed_gives_identical_training():
    import tensorflow as tf

    config = TrainConfig(steps=3, batch_size=8, seed=7)
    runs = []
    for _ in range(2):
        trainer = make_trainer(tf.distribute.get_strategy(), config)
        iterator = iter(repeat(_batch(5)))
        losses = [float(trainer.train_step(iterator)[0]) for _ in range(3)]
        runs.append((losses, [np.asarray(v.value) for v in trainer.model.trainable_variables]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_mirrored_over_two_cpus_matches_default_with_the_same_global_batch():
    process = subprocess.run([sys.executable, "-m", "tests.components.training.mirrored_check"],
                             capture_output=True, text=True, env=env(), timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout)
    assert result["default"]["replicas"] == 1 and result["mirrored"]["replicas"] == 2
    np.testing.assert_allclose(result["mirrored"]["losses"], result["default"]["losses"],
                               rtol=1e-5)
    assert result["default"]["losses"][-1] < result["default"]["losses"][0]
    for a, b in zip(result["mirrored"]["weights"], result["default"]["weights"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    from components.training.optimization import make_schedule

    config = TrainConfig(steps=110, learning_rate=1e-3, warmup_steps=10,
                         min_learning_rate_ratio=0.1)
    schedule = make_schedule(config)

    def expected(step):
        if step < 10:
            return 1e-3 * step / 10
        done = min(step - 10, 100) / 100
        return 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))

    for step in (0, 5, 10, 35, 60, 109, 110, 200):
        assert float(schedule(step)) == pytest.approx(expected(step), rel=1e-5, abs=1e-9)


def test_weight_decay_skips_norms_biases_and_embeddings():
    import tensorflow as tf

    trainer = make_trainer(tf.distribute.get_strategy(), TrainConfig(steps=10))
    decayed = {v.path for v in trainer.model.trainable_variables
               if trainer.optimizer._use_weight_decay(v)}
    assert decayed and all(path.endswith("kernel") for path in decayed)
    assert any("lm_head" in path for path in decayed)
    assert not any("embedding" in path for path in decayed)
