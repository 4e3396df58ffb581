"""The training loop. The compiled step: the loss it optimizes, and that accumulation,
several steps per call, mixed precision and every strategy change how it runs, not what it
computes. The host loop: when calls end, resuming from a checkpoint, early stopping
(divergence: `tests/components/test_train.py`)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from pipeline.core.config import TrainConfig
from tests.components.train.helpers import TINY_MODEL, make_trainer, repeat, weights
from tests.models.lm_data import env, reference_nll, reference_targets


def _batch(seed: int, batch: int = 8, length: int = 32):
    rng = np.random.default_rng(seed)
    segments = np.zeros((batch, length), np.int32)
    for row in segments:
        cut, end = sorted(rng.choice(np.arange(2, length), size=2, replace=False))
        row[:cut], row[cut:end] = 1, 2
    tokens = np.where(segments > 0, rng.integers(5, 384, segments.shape), 0).astype(np.int32)
    return {"token_ids": tokens, "segment_ids": segments}


def _stream(seeds, batch: int = 8):
    """An endless dataset cycling through distinct batches."""
    import tensorflow as tf

    batches = [_batch(s, batch) for s in seeds]
    stacked = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    return tf.data.Dataset.from_tensor_slices(stacked).batch(batch).repeat()


def _numpy_loss(model, batch) -> float:
    logits = np.asarray(model(batch, training=False))
    targets, weights_ = reference_targets(batch["token_ids"], batch["segment_ids"])
    return float((reference_nll(logits, targets) * weights_).sum() / weights_.sum())


def _default():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def test_step_loss_is_the_token_weighted_mean_over_valid_targets():
    trainer = make_trainer(_default(), TrainConfig(steps=10, batch_size=8))
    batch = _batch(1)
    expected = _numpy_loss(trainer.model, batch)
    out = trainer.run_steps(iter(repeat(batch)), 1)
    count = reference_targets(batch["token_ids"], batch["segment_ids"])[1].sum()
    assert out["steps"] == 1 and trainer.step == 1 and out["finite"]
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["target_tokens"] == count and out["nll_sum"] == pytest.approx(expected * count)
    # The first update's rate: cosine decay without warm-up, one step of ten in.
    first = 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 10))
    assert 0 < out["grad_norm"] and out["learning_rate"] == pytest.approx(first, rel=1e-6)


def test_eval_loss_matches_numpy_over_padded_batches(tmp_path):
    from components.train import data
    from tests.models import lm_data

    lm_data.write_tokenizer(tmp_path / "tokenizer")
    records = lm_data.write_examples(tmp_path / "examples", tmp_path / "tokenizer")
    trainer = make_trainer(_default(), TrainConfig(steps=10, batch_size=8))
    directory = str(tmp_path / "examples")
    spec = data.read_feature_spec(directory)
    files = data.split_files(directory, "eval")
    count = len(records["eval"])
    assert count % 8, "the last eval batch must be short for this test"
    dataset = data.eval_dataset(files, spec, 8, num_batches=100)
    assert [len(b["token_ids"]) for b in dataset] == [8] * math.ceil(count / 8)
    in_file_order = records["eval"][0::2] + records["eval"][1::2]
    batch = {k: np.stack([r[k] for r in in_file_order]).astype(np.int32)
             for k in ("token_ids", "segment_ids")}
    assert trainer.evaluate(dataset) == pytest.approx(_numpy_loss(trainer.model, batch), rel=1e-5)


def test_same_seed_gives_identical_training():
    runs = []
    for _ in range(2):
        trainer = make_trainer(_default(), TrainConfig(steps=3, batch_size=8, seed=7))
        out = trainer.run_steps(iter(_stream([5, 6, 7])), 3)
        runs.append((out["loss"], weights(trainer)))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_dropout_masks_are_drawn_anew_each_step_from_the_run_seed():
    # A learning rate of 1e-12 leaves the weights as they are: the losses of one batch
    # differ from step to step only by their dropout masks.
    config = TrainConfig(steps=3, batch_size=8, optimizer="sgd", learning_rate=1e-12,
                         warmup_steps=0, seed=7)
    batch = _batch(1)
    runs = {}
    for name, seed in (("a", 7), ("again", 7), ("other", 8)):
        trainer = make_trainer(_default(), config, dataclasses.replace(TINY_MODEL, dropout=0.5))
        trainer.seed = seed  # the same initial weights, another seed for the masks
        iterator = iter(repeat(batch))
        runs[name] = [float(trainer.run_steps(iterator, 1)["loss"]) for _ in range(3)]
    without_dropout = _numpy_loss(trainer.model, batch)
    assert runs["a"] == runs["again"], "the masks are a function of the seed and the step"
    losses = runs["a"] + [without_dropout]
    assert min(abs(a - b) for i, a in enumerate(losses) for b in losses[i + 1:]) > 1e-3, \
        "each step draws new masks, and dropout is on"
    assert all(abs(a - b) > 1e-3 for a, b in zip(runs["a"], runs["other"])), \
        "another seed draws other masks"


def test_gradient_accumulation_equals_the_whole_batch():
    results = []
    for accum in (1, 4):
        # Plain SGD: the weights move by the gradient itself, so they compare it closely.
        config = TrainConfig(steps=4, batch_size=8, grad_accum_steps=accum, optimizer="sgd",
                             learning_rate=0.5)
        trainer = make_trainer(_default(), config)
        out = trainer.run_steps(iter(_stream([11, 12])), 4)
        results.append((out, weights(trainer)))
    (whole, w_whole), (accumulated, w_accumulated) = results
    assert accumulated["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert accumulated["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-4)
    assert accumulated["target_tokens"] == whole["target_tokens"]
    for a, b in zip(w_whole, w_accumulated):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(w_whole, w_accumulated)), \
        "summation order differs, so bitwise equality would mean accumulation did not run"


def test_several_steps_per_call_equal_one_step_per_call():
    config = TrainConfig(steps=6, batch_size=8, learning_rate=1e-2)
    single = make_trainer(_default(), config)
    iterator = iter(_stream([1, 2, 3]))
    losses = [single.run_steps(iterator, 1)["loss"] for _ in range(6)]
    batched = make_trainer(_default(), config)
    out = batched.run_steps(iter(_stream([1, 2, 3])), 6)
    assert out["steps"] == 6 and batched.step == 6
    assert out["loss"] == losses[-1]
    for a, b in zip(weights(single), weights(batched)):
        np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_the_call_before_applying_the_update():
    config = TrainConfig(steps=20, batch_size=8, optimizer="sgd", learning_rate=1e12,
                         clip_norm=None)
    trainer = make_trainer(_default(), config)
    iterator = iter(_stream([3, 4]))
    out = trainer.run_steps(iterator, 20)
    assert not out["finite"] and 0 < out["steps"] < 20 and trainer.step == out["steps"]
    assert not (math.isfinite(out["loss"]) and math.isfinite(out["grad_norm"]))
    assert all(np.isfinite(w).all() for w in weights(trainer)), "the bad update was applied"


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_variables(precision):
    config = TrainConfig(steps=30, batch_size=8, learning_rate=1e-2, precision=precision)
    trainer = make_trainer(_default(), config)
    batch = _batch(4)
    first = _numpy_loss(trainer.model, batch)
    out = trainer.run_steps(iter(repeat(batch)), 30)
    assert out["finite"] and out["loss"] < 0.8 * first
    assert trainer.model.compute_dtype == precision.split("_")[1]
    assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
    if precision == "mixed_float16":
        assert type(trainer.optimizer).__name__ == "LossScaleOptimizer"
        assert float(trainer.optimizer.dynamic_scale.numpy()) > 1.0


def test_mirrored_over_two_cpus_matches_default_with_the_same_global_batch():
    process = subprocess.run([sys.executable, "-m", "tests.components.train.mirrored_check"],
                             capture_output=True, text=True, env=env(), timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout)
    assert result["default"]["replicas"] == 1
    assert result["mirrored"]["replicas"] == result["mirrored_accum"]["replicas"] == 2
    for name in ("mirrored", "mirrored_accum"):
        np.testing.assert_allclose(result[name]["losses"], result["default"]["losses"],
                                   rtol=1e-5)
        for a, b in zip(result[name]["weights"], result["default"]["weights"]):
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert result["default"]["losses"][-1] < result["default"]["losses"][0]


def test_weight_decay_skips_norms_biases_and_embeddings():
    trainer = make_trainer(_default(), TrainConfig(steps=10))
    decayed = {v.path for v in trainer.model.trainable_variables
               if trainer.optimizer._use_weight_decay(v)}
    assert decayed and all(path.endswith("kernel") for path in decayed)
    assert any("lm_head" in path for path in decayed)
    assert not any("embedding" in path for path in decayed)


def test_calls_end_at_every_step_that_must_be_logged_evaluated_or_saved():
    from components.train.loop import Plan

    plan = Plan(total_steps=25, tokens_per_step=1, steps_per_execution=8, log_every=10,
                eval_every=6, checkpoint_every=7)
    stops, step = [], 0
    while step < plan.total_steps:
        step = plan.next_stop(step)
        stops.append(step)
    assert stops == [6, 7, 10, 12, 14, 18, 20, 21, 24, 25]
    assert Plan(total_steps=20, tokens_per_step=1, steps_per_execution=8,
                log_every=10).next_stop(0) == 8


def _checkpointed(tmp_path, config, data_seeds, model_config=TINY_MODEL):
    from components.train.checkpoints import Checkpoints

    trainer = make_trainer(_default(), config, model_config)
    iterator = iter(_stream(data_seeds).shuffle(16, seed=3))
    checkpoints = Checkpoints(str(tmp_path), {"model": trainer.model,
                                              "optimizer": trainer.optimizer,
                                              "state": trainer.state, "iterator": iterator},
                              keep=2)
    return trainer, iterator, checkpoints


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resume_from_a_checkpoint_continues_exactly(tmp_path, dropout):
    from components.train.loop import Plan, fit
    from components.train.monitor import Monitor

    config = TrainConfig(steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=2)
    model_config = dataclasses.replace(TINY_MODEL, dropout=dropout)
    plan = Plan(total_steps=12, tokens_per_step=256, steps_per_execution=4, log_every=3,
                checkpoint_every=3)
    lines = []
    trainer, iterator, checkpoints = _checkpointed(tmp_path / "a", config, [1, 2, 3, 4],
                                                   model_config)
    whole = fit(trainer, iterator, plan, Monitor(str(tmp_path / "logs_a"), 12, lines.append),
                checkpoints=checkpoints)
    expected = weights(trainer)
    assert sorted(p.name for p in (tmp_path / "a").glob("*.index")) == [
        "ckpt-12.index", "ckpt-9.index"]  # keep=2

    # An interrupted run: 7 steps (last checkpoint at 6), then a fresh process restores.
    trainer, iterator, checkpoints = _checkpointed(tmp_path / "b", config, [1, 2, 3, 4],
                                                   model_config)
    fit(trainer, iterator, Plan(**{**plan.__dict__, "total_steps": 7}),
        Monitor(str(tmp_path / "logs_b"), 12, lines.append), checkpoints=checkpoints)
    trainer, iterator, checkpoints = _checkpointed(tmp_path / "b", config, [1, 2, 3, 4],
                                                   model_config)
    restored = checkpoints.restore_latest()
    assert restored.endswith("ckpt-6") and trainer.step == 6
    resumed = fit(trainer, iterator, plan, Monitor(str(tmp_path / "logs_b"), 12, lines.append,
                                                   resume_step=6), checkpoints=checkpoints)
    assert resumed.start_step == 6 and resumed.steps == 12
    assert resumed.final_train_loss == whole.final_train_loss
    for a, b in zip(expected, weights(trainer)):
        np.testing.assert_array_equal(a, b)
    logged = {name: _logged_losses(tmp_path / name) for name in ("logs_a", "logs_b")}
    assert [step for step, _ in logged["logs_b"]] == [3, 6, 9, 12], \
        "rows after the resumed step are replaced, not repeated"
    # Every step's loss to the bit, dropout masks included (steps 9 and 12 are resumed).
    assert logged["logs_b"] == logged["logs_a"]


def _logged_losses(log_dir) -> list[tuple[int, str]]:
    """(step, training loss) of each row a `Monitor` wrote to `log_dir`'s CSV."""
    with open(log_dir / "train_log.csv") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def test_early_stopping_after_patience_evaluations_without_improvement():
    from components.train.loop import Plan, fit
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
