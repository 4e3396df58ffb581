"""The oracles without training: every algorithm proposes values from the space, the
Bayesian one fits its Gaussian process, and a failure streak stops the search."""

from __future__ import annotations

import math

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
