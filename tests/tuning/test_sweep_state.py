"""The sweep's saved state on disk: written whole or not at all, and refused by name when
something else damaged it; a chief that cannot listen says so in one line."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.tuning import helpers


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return helpers.write_inputs(tmp_path_factory.mktemp("tune-inputs"))


@pytest.fixture(scope="module")
def swept(inputs, tmp_path_factory):
    """The `.sweeps` directory of a finished one-trial sweep on `inputs`."""
    base = tmp_path_factory.mktemp("swept")
    helpers.run_tune(helpers.config(base, max_trials=1), *inputs, base / "out")
    return base / "root" / "tune" / ".sweeps"


def test_oracle_and_trial_files_are_replaced_whole(tmp_path, monkeypatch):
    from tuning.tuner import make_oracle

    replaced = []
    rename = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(b), rename(a, b))[1])
    oracle = make_oracle(helpers.config(tmp_path).tuning, "eval_loss")
    oracle._set_project_dir(str(tmp_path), "project")
    trial = oracle.create_trial("tuner0")
    oracle.save()
    project = tmp_path / "project"
    assert str(project / "oracle.json") in replaced
    assert str(project / f"trial_{trial.trial_id}" / "trial.json") in replaced
    state = json.loads((project / "oracle.json").read_text())
    assert state["start_order"] == [trial.trial_id]


@pytest.mark.parametrize("name", ["oracle.json", "trial_0/trial.json",
                                  "trial_0/lmpipe_trial.json"])
def test_a_damaged_state_file_stops_the_sweep_naming_it(inputs, swept, tmp_path, name):
    from tuning.sweep import SweepFailed

    sweeps = tmp_path / "root" / "tune" / ".sweeps"
    shutil.copytree(swept, sweeps)
    (project,) = sweeps.iterdir()
    (project / name).write_text('{"start_order": ["0"')  # cut off mid-write
    with pytest.raises(SweepFailed, match=rf"^{project / name}: the sweep's saved state cannot "
                                          rf"be read \(.+\); delete {project} to run this sweep "
                                          r"again from its first trial$"):
        helpers.run_tune(helpers.config(tmp_path, max_trials=2), *inputs, tmp_path / "out")
    assert not (tmp_path / "root" / "tune" / ".sweeps" / project.name / "trial_1").exists()


def test_a_completed_trial_whose_record_was_deleted_stays_in_the_choice_of_best(
        inputs, swept, tmp_path):
    sweeps = tmp_path / "root" / "tune" / ".sweeps"
    shutil.copytree(swept, sweeps)
    (project,) = sweeps.iterdir()
    score = json.loads((project / "trial_0" / "trial.json").read_text())["score"]
    recorded = json.loads((project / "trial_0" / "lmpipe_trial.json").read_text())["objective"]
    assert score == pytest.approx(recorded)
    (project / "trial_0" / "lmpipe_trial.json").unlink()
    out = tmp_path / "out"
    helpers.run_tune(helpers.config(tmp_path, max_trials=1), *inputs, out)
    assert json.loads((out / "sweep.json").read_text())["best_value"] == score
    (row,) = helpers.read_table(out / "trials.csv")
    assert row["status"] == "completed"
    assert row["reason"] == "lmpipe_trial.json missing: tokens and seconds unknown"


def test_a_chief_that_cannot_listen_is_a_usage_error_in_one_line(tiny_config_file):
    from tests.conftest import run_lmpipe

    # 192.0.2.1 (TEST-NET-1) is never an address of this machine.
    result = run_lmpipe("tune", "--config", tiny_config_file, "--set", "tuning.max_trials=1",
                        "--set", "tuning.space={batch_size: [8]}",
                        env_update={"KERASTUNER_TUNER_ID": "chief",
                                    "KERASTUNER_ORACLE_IP": "192.0.2.1",
                                    "KERASTUNER_ORACLE_PORT": "8470"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "lmpipe: error: tune: the chief cannot listen on 192.0.2.1:8470 (not an address of "
        "this machine, or the port is taken): fix KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT")
