"""The oracles without training: every algorithm proposes values from the space, the
Bayesian one fits its Gaussian process, a failure streak stops the search, and a chief
hands a silent worker's trial to another."""

from __future__ import annotations

import math
import threading

import pytest

from tests.tuning import helpers


def _finish(oracle, trial, loss=None):
    from keras_tuner.engine.trial import TrialStatus

    if loss is None:
        trial.status = TrialStatus.FAILED
    else:
        oracle.update_trial(trial.trial_id, {"eval_loss": loss})
        trial.status = TrialStatus.COMPLETED
    oracle.end_trial(trial)
    oracle.save()  # as the tuner does after each trial


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_oracles_propose_values_from_the_space(tmp_path, algorithm):
    from tuning.tuner import make_oracle

    cfg = helpers.config(tmp_path, algorithm=algorithm, max_trials=9)
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    seen = []
    for _ in range(9):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        assert 1e-3 <= values["train.learning_rate"] <= 1e-2
        assert values["train.batch_size"] in (4, 8)
        seen.append(values["train.learning_rate"])
        # A bowl in log(lr) with its bottom at 3e-3: the GP has something to model.
        _finish(oracle, trial, (math.log10(values["train.learning_rate"]) + 2.5) ** 2)
    assert len(set(seen)) == 9
    assert oracle.create_trial("tuner0").status == "STOPPED"  # max_trials reached
    best = oracle.get_best_trials(1)[0]
    assert best.score == min((math.log10(v) + 2.5) ** 2 for v in seen)


def _new_learning_rates(oracle, count: int) -> list[float]:
    """The learning rates of the next `count` trials (each finished, scored by its rate)."""
    rates = []
    for _ in range(count):
        trial = oracle.create_trial("tuner0")
        rates.append(trial.hyperparameters.values["train.learning_rate"])
        _finish(oracle, trial, rates[-1])
    return rates


@pytest.mark.parametrize("algorithm, count", [("random", 8), ("hyperband", 8), ("bayesian", 4)])
def test_quasi_random_sampling_spreads_new_trials_over_the_range(tmp_path, algorithm, count):
    from tuning.tuner import make_oracle

    cfg = helpers.config(tmp_path, algorithm=algorithm, sampler="quasi_random", max_trials=50,
                         hyperband={"max_units": 9, "factor": 3})
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    # Hyperband's first 8 are new configurations of its first bracket, the Bayesian
    # oracle's first 4 its random initial points: one in every eighth (quarter) of the
    # log range 1e-3..1e-2, which independent draws give once in 400 (10) sweeps.
    rates = _new_learning_rates(oracle, count)
    assert sorted(int(count * (math.log10(lr) + 3)) for lr in rates) == list(range(count))


def test_the_random_sampler_keeps_keras_tuners_independent_draws(tmp_path):
    from tuning import space
    from tuning.tuner import make_oracle

    cfg = helpers.config(tmp_path, sampler="random", max_trials=8, seed=5)
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    learning_rate, _ = space.hyperparameters(cfg.tuning.space).space
    # KerasTuner seeds draw i of each hyperparameter in turn: seed + 2i for the first of two.
    assert _new_learning_rates(oracle, 8) == [learning_rate.random_sample(5 + 2 * i)
                                              for i in range(8)]


def test_a_reloaded_quasi_random_sweep_goes_on_along_its_sequence(tmp_path):
    from tuning.tuner import make_oracle

    def oracle(project):
        cfg = helpers.config(tmp_path, sampler="quasi_random", max_trials=8, seed=7)
        made = make_oracle(cfg.tuning, "eval_loss")
        made._set_project_dir(str(tmp_path), project)
        return made

    whole = _new_learning_rates(oracle("whole"), 8)
    first = _new_learning_rates(oracle("resumed"), 3)
    resumed = oracle("resumed")
    resumed.reload()
    assert first + _new_learning_rates(resumed, 5) == whole
    other_seed = make_oracle(helpers.config(tmp_path, sampler="quasi_random", max_trials=8,
                                            seed=8).tuning, "eval_loss")
    other_seed._set_project_dir(str(tmp_path), "other")
    assert _new_learning_rates(other_seed, 8) != whole


def test_a_failure_streak_stops_the_search_and_survives_a_reload(tmp_path):
    from tuning.tuner import make_oracle

    cfg = helpers.config(tmp_path, max_trials=9, max_consecutive_failed_trials=2)
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    _finish(oracle, oracle.create_trial("tuner0"))
    _finish(oracle, oracle.create_trial("tuner0"), 1.0)  # a success resets the streak
    _finish(oracle, oracle.create_trial("tuner0"))
    assert oracle.failure_streak() == 1
    _finish(oracle, oracle.create_trial("tuner0"))
    assert oracle.failure_streak() == 2
    assert oracle.create_trial("tuner0").status == "STOPPED"
    reloaded = make_oracle(cfg.tuning, "eval_loss")
    reloaded._set_project_dir(str(tmp_path), "project")
    reloaded.reload()
    assert reloaded.failure_streak() == 2
    assert reloaded.create_trial("tuner0").status == "STOPPED"
    # Allowing longer streaks (not part of the sweep's key) lets the sweep go on.
    more = make_oracle(helpers.config(tmp_path, max_trials=9,
                                      max_consecutive_failed_trials=3).tuning, "eval_loss")
    more._set_project_dir(str(tmp_path), "project")
    more.reload()
    assert more.create_trial("tuner0").status == "RUNNING"


def _run_hyperband(oracle, fail: set[int]) -> list[dict]:
    """Drive `oracle` to its end; trials numbered in `fail` fail, the others score their
    learning rate (lower is better). Returns each trial's values in creation order."""
    trials = []
    while (trial := oracle.create_trial("tuner0")).status == "RUNNING":
        values = dict(trial.hyperparameters.values, number=len(trials))
        trials.append(values)
        _finish(oracle, trial, None if values["number"] in fail else values["train.learning_rate"])
    return trials


@pytest.mark.parametrize("fail", [set(), {2}, {2, 5}])
def test_hyperband_brackets_reach_the_full_budget_despite_failed_trials(tmp_path, fail):
    from tuning.tuner import make_oracle

    cfg = helpers.config(tmp_path, algorithm="hyperband", max_trials=100,
                         hyperband={"max_units": 9, "factor": 3})
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    trials = _run_hyperband(oracle, fail)
    first = [t for t in trials if t["tuner/bracket"] == 2]
    # The most aggressive bracket screens 9 at one unit, continues 3 to 3 units and 1 to 9,
    # whatever failed on the way (KerasTuner alone never promotes past a failed trial's
    # rung: 21 trials, none of this bracket at 9 units).
    assert [t["tuner/epochs"] for t in first] == [1] * 9 + [3] * 3 + [9]
    assert len(trials) == 23
    screened = {t["number"]: t["train.learning_rate"] for t in first[:9]}
    survivors = sorted((lr, n) for n, lr in screened.items() if n not in fail)[:3]
    promoted = [t["train.learning_rate"] for t in first[9:12]]
    assert promoted == [lr for lr, _ in survivors]  # the best three, never a failed one
    assert first[12]["train.learning_rate"] == survivors[0][0]


@pytest.mark.parametrize("max_trials, warning", [
    (12, "warning: tuning.max_trials 12 stops Hyperband after 12 of its 23 trials; no trial "
         "trains the full budget before trial 13. Set tuning.max_trials: 23 to run all its brackets"),
    (13, "warning: tuning.max_trials 13 stops Hyperband after 13 of its 23 trials. Set "
         "tuning.max_trials: 23 to run all its brackets"),
    (23, None),
])
def test_a_max_trials_that_cuts_hyperband_short_says_so(tmp_path, max_trials, warning):
    from tuning.tuner import hyperband_cut_short, make_oracle

    cfg = helpers.config(tmp_path, algorithm="hyperband", max_trials=max_trials,
                         hyperband={"max_units": 9, "factor": 3})
    assert hyperband_cut_short(cfg.tuning) == warning
    # What it says is what KerasTuner's brackets do: the first trial at the full budget
    # is the 13th, the last of the 23 ends them.
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    units = [t["tuner/epochs"] for t in _run_hyperband(oracle, set())]
    assert len(units) == max_trials
    assert 9 not in units[:12] and units[12:13] in ([], [9])


def test_max_trials_is_no_cut_for_random_search(tmp_path):
    from tuning.tuner import hyperband_cut_short

    assert hyperband_cut_short(helpers.config(tmp_path, max_trials=2).tuning) is None


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _parallel_oracle(tmp_path, max_trials: int):
    """An oracle as a chief holds it, with a clock the test moves and no pause for IDLE."""
    from tuning.tuner import make_oracle

    cfg = helpers.config(tmp_path, max_trials=max_trials, reclaim_after_seconds=60)
    oracle = make_oracle(cfg.tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    oracle.clock, oracle.idle_seconds = _Clock(), 0.0
    return oracle


def test_a_trial_whose_worker_went_silent_goes_to_the_next_worker_and_the_chief_can_end(
        tmp_path):
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    oracle = _parallel_oracle(tmp_path, max_trials=3)
    lost = oracle.create_trial("worker0")  # worker0 dies while training it
    first = oracle.create_trial("worker1")
    oracle.clock.now = 30.0
    oracle.update_trial(first.trial_id, {})  # worker1 reports while it trains
    _finish(oracle, first, 1.0)
    second = oracle.create_trial("worker1")
    _finish(oracle, second, 2.0)
    # No trial left, but worker0's is ongoing and not yet lost: worker1 waits, it does not
    # leave the sweep (else nobody would be there to take the trial over).
    assert oracle.create_trial("worker1").status == "IDLE"
    assert not exit_chief(oracle)
    oracle.clock.now = 61.0  # worker0 silent for more than 60 s
    retried = oracle.create_trial("worker1")
    assert (retried.status, retried.trial_id) == ("RUNNING", lost.trial_id)
    assert retried.hyperparameters.values == lost.hyperparameters.values
    _finish(oracle, retried, 0.5)
    assert oracle.create_trial("worker1").status == "STOPPED"
    assert exit_chief(oracle)
    assert sorted(oracle.end_order) == sorted([lost.trial_id, first.trial_id, second.trial_id])
    assert oracle.get_best_trials(1)[0].trial_id == lost.trial_id


def test_a_worker_that_reports_is_not_reclaimed_and_a_late_end_counts_once(tmp_path):
    oracle = _parallel_oracle(tmp_path, max_trials=2)
    slow = oracle.create_trial("worker0")
    other = oracle.create_trial("worker1")
    _finish(oracle, other, 1.0)
    for now in (50.0, 100.0, 150.0):  # worker0 reports every 50 s
        oracle.clock.now = now
        oracle.update_trial(slow.trial_id, {})
        assert oracle.create_trial("worker1").status == "IDLE"
    # Silent for too long: taken over by worker1, which ends it first; worker0's late end
    # of the same trial is ignored.
    oracle.clock.now = 250.0
    taken = oracle.create_trial("worker1")
    assert taken.trial_id == slow.trial_id
    _finish(oracle, taken, 0.7)
    _finish(oracle, slow, 0.9)
    assert oracle.end_order.count(slow.trial_id) == 1
    assert oracle.trials[slow.trial_id].score == 0.7
    assert oracle.trials[slow.trial_id].metrics.get_history("eval_loss")[-1].value == [0.7]


def test_a_restarted_chief_retries_only_the_trials_that_had_not_ended(tmp_path):
    from tuning.tuner import make_oracle

    oracle = _parallel_oracle(tmp_path, max_trials=3)
    lost = oracle.create_trial("worker0")  # the chief goes down while this one runs
    ended = oracle.create_trial("worker1")
    # As a chief ends a worker's trial: no save of its own after KerasTuner's.
    oracle.update_trial(ended.trial_id, {"eval_loss": 1.0})
    ended.status = "COMPLETED"
    oracle.end_trial(ended)
    restarted = make_oracle(helpers.config(tmp_path, max_trials=3).tuning, "eval_loss")
    restarted._set_project_dir(str(tmp_path), "project")
    restarted.reload()
    assert restarted._retry_queue == [lost.trial_id]
    assert restarted.create_trial("worker2").trial_id == lost.trial_id


def test_a_worker_silent_inside_its_trial_still_reports_and_keeps_it(tmp_path, monkeypatch):
    # A model build, a slow step or the final evaluation can outlast `reclaim_after`
    # without a progress line: the tuner reports from a thread while the trial runs, so a
    # live worker keeps its trial and the other worker waits. Real clock, real thread.
    import time
    from types import SimpleNamespace

    import keras_tuner

    from tuning import tuner
    from tuning.budget import TokenBudget

    oracle = _parallel_oracle(tmp_path, max_trials=2)
    oracle.clock, oracle.reclaim_after = time.monotonic, 2.0
    hypermodel = keras_tuner.HyperModel()
    hypermodel.budget = TokenBudget(tokens_per_trial=1000, max_units=1)
    hypermodel.plan = lambda values: SimpleNamespace(units=1, start_units=0, parent=None,
                                                     tokens_per_step=10)
    worker0 = tuner.TokenBudgetTuner(oracle, hypermodel, "eval_loss", 2, log=lambda line: None,
                                     report_every=0.1, directory=str(tmp_path),
                                     project_name="project")
    other = oracle.create_trial("worker1")
    _finish(oracle, other, 1.0)
    asked = []

    def silent_fit(trial, plan, label):
        time.sleep(3.0)  # silent for longer than reclaim_after
        asked.append(oracle.create_trial("worker1").status)
        return SimpleNamespace(eval_loss=0.5, steps=100, start_step=0, final_train_loss=0.6,
                               resumed=False)

    monkeypatch.setattr(worker0, "_fit", silent_fit)
    trial = oracle.create_trial("worker0")
    assert worker0.run_trial(trial) == {"eval_loss": 0.5}
    assert asked == ["IDLE"]  # not handed to worker1
    (reporter,) = [t for t in threading.enumerate() if t.name == f"alive-{trial.trial_id}"] or [None]
    if reporter is not None:  # it stops with the trial
        reporter.join(5.0)
        assert not reporter.is_alive()
