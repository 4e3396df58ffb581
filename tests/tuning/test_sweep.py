"""Sweeps in this process on the tiny inputs: the artifact, equal token budgets for
different batch sizes, Hyperband continuations, failed trials, and raising max_trials
through the local runner."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tests.tuning import helpers

L = helpers.SEQUENCE_LENGTH


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return helpers.write_inputs(tmp_path_factory.mktemp("tune-inputs"))


def test_sweep_writes_best_table_and_plot(inputs, tmp_path):
    cfg = helpers.config(tmp_path, max_trials=3)
    out = tmp_path / "out"
    properties = helpers.run_tune(cfg, *inputs, out)["hyperparameters"]
    rows = helpers.read_table(out / "trials.csv")
    records = helpers.records(tmp_path / "root")
    assert [r["trial"] for r in rows] == ["1", "2", "3"] and len(records) == 3
    assert all(r["status"] == "completed" for r in rows)
    for row in rows:
        assert float(row["eval_loss"]) == pytest.approx(records[row["trial_id"]]["eval_loss"])
        assert 1e-3 <= float(row["train.learning_rate"]) <= 1e-2
    # The best row is the lowest objective, and best.json holds its values, with the
    # training run's steps rescaled to keep its tokens (30 steps x 8 rows x 32).
    best = min(rows, key=lambda r: float(r["eval_loss"]))
    overrides = json.loads((out / "best.json").read_text())
    assert overrides["train.learning_rate"] == pytest.approx(float(best["train.learning_rate"]))
    assert overrides["train.batch_size"] == int(best["train.batch_size"])
    assert overrides.get("train.steps", 30) == math.ceil(30 * 8 / int(best["train.batch_size"]))
    assert set(overrides) <= {"train.learning_rate", "train.batch_size", "train.steps"}
    assert properties["best_value"] == pytest.approx(float(best["eval_loss"]))
    assert properties["tokens_spent"] == sum(int(r["tokens"]) for r in rows)
    png = (out / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert json.loads((out / "sweep.json").read_text())["sampler"] == "quasi_random"
    # The quasi-random sequence's first two (the default sampler): one in each half.
    halves = {math.log10(float(r["train.learning_rate"])) < -2.5 for r in rows[:2]}
    assert halves == {True, False}


def test_batch_sizes_get_equal_token_budgets(inputs, tmp_path):
    cfg = helpers.config(tmp_path, max_trials=3,
                         space={"learning_rate": None, "batch_size": [4, 8, 16]})
    helpers.run_tune(cfg, *inputs, tmp_path / "out")
    rows = helpers.read_table(tmp_path / "out" / "trials.csv")
    records = helpers.records(tmp_path / "root")
    assert sorted(int(r["train.batch_size"]) for r in rows) == [4, 8, 16]
    for row in rows:
        size, tokens = int(row["train.batch_size"]), int(row["tokens"])
        # Counted from the optimizer steps the trainer took, each one batch of size x L.
        assert tokens == records[row["trial_id"]]["steps"] * size * L
        assert 6000 <= tokens < 6000 + size * L
    tokens = [int(r["tokens"]) for r in rows]
    assert max(tokens) - min(tokens) < 16 * L
    # ... and with four times the batch, a quarter of the steps (not the same steps).
    steps = {int(r["train.batch_size"]): records[r["trial_id"]]["steps"] for r in rows}
    assert steps == {4: 47, 8: 24, 16: 12}


def test_trial_objective_is_the_eval_loss_of_its_model(inputs, tmp_path):
    """The table's objective equals an independent evaluation of the same trial."""
    import keras_tuner

    from tuning import budget, hypermodel, trial

    cfg = helpers.config(tmp_path, max_trials=1)
    examples, tokenizer = inputs
    context = trial.make_context(str(examples), str(tokenizer), cfg.task, cfg.train)
    model_builder = hypermodel.LmHyperModel(context, cfg.train, cfg.model,
                                            budget.TokenBudget(tokens_per_trial=6000))
    hp = keras_tuner.HyperParameters()
    hp.values = {"train.learning_rate": 0.005, "train.batch_size": 8}
    with context.strategy.scope():
        model = model_builder.build(hp)
    outcome = model_builder.fit(hp, model, log=lambda line: None)
    assert outcome.steps == math.ceil(6000 / (8 * L)) and outcome.start_step == 0

    import numpy as np
    import tensorflow as tf

    # Independent: NLL of the first eval_batches x batch_size eval windows, in NumPy.
    records = [r for path in sorted(examples.glob("eval-*.tfrecord"))
               for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]
    windows = [tf.train.Example.FromString(r) for r in records][:4 * 8]
    ids = np.array([list(w.features.feature["token_ids"].int64_list.value) for w in windows])
    seg = np.array([list(w.features.feature["segment_ids"].int64_list.value) for w in windows])
    logits = np.asarray(model({"token_ids": ids.astype("int32"),
                               "segment_ids": seg.astype("int32")}), dtype=np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    # Next-token targets within the same document (segment), padding excluded.
    mask = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
    nll = -np.take_along_axis(log_probs[:, :-1], ids[:, 1:, None], -1)[..., 0]
    assert outcome.eval_loss == pytest.approx((nll * mask).sum() / mask.sum(), rel=1e-4)


def test_hyperband_continuation_is_the_longer_run(inputs, tmp_path):
    """A promoted trial continues its parent's run exactly: the same model as one trained
    straight to the full budget, and the tokens add up."""
    import keras_tuner

    from tuning import budget, hypermodel, trial

    cfg = helpers.config(tmp_path)
    examples, tokenizer = inputs
    context = trial.make_context(str(examples), str(tokenizer), cfg.task, cfg.train)
    builder = hypermodel.LmHyperModel(context, cfg.train, cfg.model,
                                      budget.TokenBudget(tokens_per_trial=6000, max_units=3))
    values = {"train.learning_rate": 0.005, "train.batch_size": 4}

    def run(extra, checkpoint_in=None, checkpoint_out=None):
        hp = keras_tuner.HyperParameters()
        hp.values = {**values, **extra}
        with context.strategy.scope():
            model = builder.build(hp)
        return builder.fit(hp, model, checkpoint_in=checkpoint_in, checkpoint_out=checkpoint_out,
                           log=lambda line: None)

    ckpt = str(tmp_path / "parent")
    parent = run({"tuner/epochs": 1, "tuner/initial_epoch": 0}, checkpoint_out=ckpt)
    child = run({"tuner/epochs": 3, "tuner/initial_epoch": 1, "tuner/trial_id": "0"},
                checkpoint_in=ckpt)
    straight = run({"tuner/epochs": 3, "tuner/initial_epoch": 0})
    assert parent.steps == math.ceil(2000 / (4 * L)) == child.start_step and child.resumed
    assert child.steps == straight.steps == math.ceil(6000 / (4 * L))
    assert child.eval_loss == pytest.approx(straight.eval_loss, rel=1e-5)
    assert child.eval_loss < parent.eval_loss


@pytest.mark.slow
def test_hyperband_sweep_spends_units_of_tokens(inputs, tmp_path):
    cfg = helpers.config(tmp_path, algorithm="hyperband", max_trials=20,
                         hyperband={"max_units": 3, "factor": 3}, tokens_per_trial=3 * 1024,
                         space={"learning_rate": {"min": 1e-3, "max": 3e-2},
                                "batch_size": [4, 8]})
    out = tmp_path / "out"
    helpers.run_tune(cfg, *inputs, out)
    rows = helpers.read_table(out / "trials.csv")
    assert len(rows) == 6  # KerasTuner's brackets for max_epochs 3, factor 3
    by_trial = {r["trial"]: r for r in rows}
    promoted = [r for r in rows if r["parent"]]
    assert len(promoted) == 1
    child = promoted[0]
    parent = by_trial[child["parent"]]
    assert int(parent["units"]) == 1 and int(child["units"]) == 3
    assert int(child["model_tokens"]) == int(parent["tokens"]) + int(child["tokens"])
    size = int(child["train.batch_size"])
    assert 3 * 1024 <= int(child["model_tokens"]) < 3 * 1024 + size * L
    # The parent was the best of its rung (successive halving keeps the best third).
    rung = [r for r in rows if r["units"] == "1"]
    assert parent["trial"] == min(rung, key=lambda r: float(r["eval_loss"]))["trial"]
    assert not list((tmp_path / "root").glob("tune/.sweeps/*/trial_*/checkpoint"))


def test_a_hyperband_sweep_cut_short_by_max_trials_warns(inputs, tmp_path, capfd):
    cfg = helpers.config(tmp_path, algorithm="hyperband", max_trials=2,
                         hyperband={"max_units": 3, "factor": 3}, tokens_per_trial=3 * 1024)
    out = tmp_path / "out"
    helpers.run_tune(cfg, *inputs, out)
    assert ("warning: tuning.max_trials 2 stops Hyperband after 2 of its 6 trials; no trial "
            "trains the full budget before trial 4. Set tuning.max_trials: 6 to run all its "
            "brackets") in capfd.readouterr().err
    assert [r["units"] for r in helpers.read_table(out / "trials.csv")] == ["1", "1"]


def test_failed_trials_are_recorded_and_the_sweep_goes_on(inputs, tmp_path, capfd):
    # SGD without clipping diverges at the top of this range (NaN loss or gradient).
    raw = helpers.raw_config(tmp_path, max_trials=5, max_consecutive_failed_trials=5, space={
        "learning_rate": {"min": 1e-3, "max": 1e9}, "batch_size": [8]})
    raw["train"].update(optimizer="sgd", clip_norm=None)
    out = tmp_path / "out"
    helpers.run_tune(helpers.build_config(raw), *inputs, out)
    # A failure is one line of progress; its traceback stays in the trial's trial.json.
    assert "Traceback" not in capfd.readouterr().err
    rows = helpers.read_table(out / "trials.csv")
    statuses = [r["status"] for r in rows]
    assert len(rows) == 5 and "completed" in statuses
    assert "failed" in statuses[:-1]  # a failure, and the sweep went on after it
    for row in rows:
        if row["status"] == "failed":
            assert re.fullmatch(r"diverged: (training loss|gradient norm) is (nan|inf) at step "
                                r"\d+ \(learning rate .+\)", row["reason"]), row["reason"]
            assert row["eval_loss"] == "" and float(row["train.learning_rate"]) > 1
        else:
            assert row["reason"] == "" and math.isfinite(float(row["eval_loss"]))
    best = json.loads((out / "best.json").read_text())
    completed = [r for r in rows if r["status"] == "completed"]
    assert best["train.learning_rate"] == pytest.approx(
        float(min(completed, key=lambda r: float(r["eval_loss"]))["train.learning_rate"]))


def test_hopeless_sweep_stops_with_a_clear_error(inputs, tmp_path):
    from tuning.sweep import SweepFailed

    raw = helpers.raw_config(tmp_path, max_trials=5, max_consecutive_failed_trials=2, space={
        "learning_rate": {"min": 1e30, "max": 1e38}, "batch_size": [8]})
    raw["train"].update(optimizer="sgd", clip_norm=None)
    with pytest.raises(SweepFailed, match=r"2 trials in a row failed, the sweep stopped "
                                          r"\(tuning.max_consecutive_failed_trials\); "
                                          r"last reason: diverged: training loss is"):
        helpers.run_tune(helpers.build_config(raw), *inputs, tmp_path / "out")
    records = helpers.records(tmp_path / "root")
    assert sorted(records) == ["0", "1"]  # no third trial was started
    assert all(r["status"] == "failed" for r in records.values())


def test_out_of_memory_and_other_reasons_are_one_line():
    import tensorflow as tf

    from components.train.loop import TrainingDiverged
    from tuning.trial import failure_reason

    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor\nmore")
    assert failure_reason(oom) == "out of memory: OOM when allocating tensor"
    assert failure_reason(ValueError("bad\nvalue")) == "ValueError: bad"
    assert len(failure_reason(RuntimeError("x" * 1000))) == 300
    assert failure_reason(TrainingDiverged("boom")) == "TrainingDiverged: boom"


def test_raising_max_trials_continues_the_sweep_through_the_runner(tmp_path, capfd):
    from pipeline.local_runner import run_pipeline
    from tests.tuning import data_component

    first = helpers.config(tmp_path, max_trials=2)
    record = run_pipeline(first, nodes=data_component.nodes())
    assert record["components"]["tune"]["status"] == "executed"
    before = helpers.records(tmp_path / "root")
    capfd.readouterr()
    more = helpers.config(tmp_path, max_trials=3)
    record = run_pipeline(more, nodes=data_component.nodes())
    err = capfd.readouterr().err
    # A new execution (the config changed) that reuses the two finished trials.
    assert record["components"]["tune"]["status"] == "executed"
    assert "trial 3/3 [" in err and "trial 1/3 [" not in err and "trial 2/3 [" not in err
    after = helpers.records(tmp_path / "root")
    assert sorted(after) == ["0", "1", "2"]
    assert {k: after[k] for k in before} == before
    uri = record["components"]["tune"]["outputs"]["hyperparameters"]
    assert len(helpers.read_table(Path(uri) / "trials.csv")) == 3
    # The same config again is a cache hit.
    assert run_pipeline(more, nodes=data_component.nodes())["components"]["tune"]["status"] == "cached"


def test_hyperband_does_not_train_the_continuation_of_a_failed_trial(inputs, tmp_path):
    from tuning.sweep import SweepFailed

    # Every configuration diverges; the rung still promotes one (failed trials rank last,
    # tuning/tuner.py) and that continuation fails at once instead of training again.
    raw = helpers.raw_config(tmp_path, algorithm="hyperband", max_trials=20,
                             max_consecutive_failed_trials=20, tokens_per_trial=3 * 1024,
                             hyperband={"max_units": 3, "factor": 3},
                             space={"learning_rate": {"min": 1e30, "max": 1e38},
                                    "batch_size": [8]})
    raw["train"].update(optimizer="sgd", clip_norm=None)
    with pytest.raises(SweepFailed, match=r"none of 6 trial\(s\) completed"):
        helpers.run_tune(helpers.build_config(raw), *inputs, tmp_path / "out")
    records = helpers.records(tmp_path / "root")
    continued = [r for r in records.values() if r["parent"] is not None]
    assert len(records) == 6 and len(continued) == 1
    child = continued[0]
    assert child["status"] == "failed" and child["tokens"] == 0
    assert child["reason"] == f"continues trial {int(child['parent']) + 1}, which failed"
    assert records[child["parent"]]["status"] == "failed"
