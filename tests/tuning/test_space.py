"""The search space as data: parsing, validation, KerasTuner's view of it, config overrides;
budget arithmetic and the cluster-spec -> KerasTuner environment mapping."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from pipeline.core.errors import ConfigError
from tests.conftest import run_lmpipe
from tests.tuning import helpers


def test_space_in_yaml_becomes_keras_tuner_hyperparameters(tmp_path):
    from tuning import space

    cfg = helpers.config(tmp_path, space={
        "learning_rate": {"min": 1e-4, "max": 1e-2}, "batch_size": [4, 8],
        "weight_decay": {"min": 0.0, "max": 0.1, "sampling": "linear"},
        "optimizer": ["adamw", "lion"], "num_layers": [1, 2], "hidden_dim": [16, 32]})
    names = space.names(cfg.tuning.space)
    assert names == ["train.learning_rate", "train.batch_size", "train.weight_decay",
                     "train.optimizer", "model.num_layers", "model.hidden_dim"]
    hp = space.hyperparameters(cfg.tuning.space)
    by_name = {p.name: p.get_config() for p in hp.space}
    assert list(by_name) == names
    assert (by_name["train.learning_rate"]["min_value"], by_name["train.learning_rate"]["max_value"],
            by_name["train.learning_rate"]["sampling"]) == (1e-4, 1e-2, "log")
    assert by_name["train.weight_decay"]["sampling"] == "linear"
    assert by_name["train.batch_size"]["values"] == [4, 8]
    assert by_name["train.optimizer"]["values"] == ["adamw", "lion"]


def test_log_sampling_is_uniform_in_log_space(tmp_path):
    from tuning import space

    hp = space.hyperparameters(helpers.config(tmp_path).tuning.space)
    lr = next(p for p in hp.space if p.name == "train.learning_rate")
    logs = [math.log10(lr.random_sample(seed)) for seed in range(2000)]
    assert -3 <= min(logs) and max(logs) <= -2
    # Log-uniform on [1e-3, 1e-2]: each tenth of the decade holds about a tenth.
    below = sum(x < -2.9 for x in logs) / len(logs)
    assert 0.07 < below < 0.13


def test_trial_values_override_the_config_sections(tmp_path):
    from tuning import space

    cfg = helpers.config(tmp_path)
    values = {"train.learning_rate": 0.004, "train.batch_size": 4, "model.num_layers": 2,
              "tuner/epochs": 3}
    train, model = space.trial_configs(values, cfg.train, cfg.model, steps=77)
    assert (train.learning_rate, train.batch_size, train.steps) == (0.004, 4, 77)
    assert model.num_layers == 2 and model.hidden_dim == cfg.model.hidden_dim
    assert train.optimizer == cfg.train.optimizer  # not tuned: the config's value
    assert space.tuned_values(values) == {k: v for k, v in values.items() if k != "tuner/epochs"}


@pytest.mark.parametrize("tuning, key, expected", [
    ({"space": {"learning_rate": {"min": 0, "max": 1}}}, "tuning.space.learning_rate.min",
     "must be > 0 for log sampling"),
    ({"space": {"learning_rate": {"min": 1e-2, "max": 1e-3}}}, "tuning.space.learning_rate.max",
     "must be above min"),
    ({"space": {"batch_size": [8, 8]}}, "tuning.space.batch_size", "must not repeat"),
    ({"space": {"batch_size": []}}, "tuning.space.batch_size", "at least one choice"),
    ({"space": {"batch_size": [0, 8]}}, "tuning.space.batch_size", "choices must be > 0"),
    ({"space": {"optimizer": ["adam", "adamm"]}}, "tuning.space.optimizer", "must be among"),
    ({"space": {"weight_decay": {"min": -0.1, "max": 0.1, "sampling": "linear"}}},
     "tuning.space.weight_decay.min", "must be >= 0"),
    ({"space": {"learning_rate": None, "batch_size": None}}, "tuning.space", "tunes nothing"),
    ({"space": {"lr": {"min": 1e-3, "max": 1e-2}}}, "tuning.space.lr", "unknown key"),
    ({"space": {"hidden_dim": [16, 24, 25]}}, "tuning.space.hidden_dim",
     "multiples of model.num_heads (2), got 25"),
    ({"algorithm": "grid"}, "tuning.algorithm", "expected one of random, bayesian, hyperband"),
    ({"sampler": "sobol"}, "tuning.sampler", "expected one of random, quasi_random"),
    ({"seed": 0}, "tuning.seed", "must be >= 1"),
    ({"max_trials": 0}, "tuning.max_trials", "must be > 0"),
    ({"tokens_per_trial": 500}, "tuning.tokens_per_trial", "not more than the warm-up"),
    ({"algorithm": "hyperband", "tokens_per_trial": 2000}, "tuning.tokens_per_trial",
     "at least one batch of the largest batch size"),
])
def test_bad_tuning_config_names_the_key(tmp_path, tuning, key, expected):
    raw = helpers.raw_config(tmp_path)
    raw["tuning"] = {**raw["tuning"], **tuning}
    raw["tuning"]["space"] = {**helpers.raw_config(tmp_path)["tuning"]["space"],
                              **tuning.get("space", {})}
    if "lr" in raw["tuning"]["space"]:
        del raw["tuning"]["space"]["learning_rate"]
    with pytest.raises(ConfigError) as caught:
        helpers.build_config(raw)
    assert caught.value.key == key
    assert expected in str(caught.value)


def test_disabled_tuning_skips_the_cross_checks(tmp_path):
    cfg = helpers.config(tmp_path, enabled=False, tokens_per_trial=10)
    assert cfg.tuning.tokens_per_trial == 10


def test_cli_reports_a_bad_space_in_one_line(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(helpers.raw_config(tmp_path)))
    result = run_lmpipe("tune", "--config", path, "--set",
                        "tuning.space.batch_size=[4, -8]")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lmpipe: error: config key 'tuning.space.batch_size': choices must be > 0, got [4, -8]"]
    assert result.stdout == ""


@pytest.mark.parametrize("batch_size", [4, 8, 16, 24])
def test_plans_spend_the_same_tokens_within_one_batch(batch_size):
    from tuning.budget import TokenBudget

    budget = TokenBudget(tokens_per_trial=10_000)
    plan = budget.plan({}, batch_size, 32)
    per_step = batch_size * 32
    assert plan.stop_step == plan.schedule_steps and plan.start_step == 0
    assert 10_000 <= plan.tokens < 10_000 + per_step


def test_hyperband_units_are_token_budgets():
    from tuning.budget import TokenBudget, bracket_trials, hyperband_trials

    budget = TokenBudget(tokens_per_trial=9_000, max_units=9)
    first = budget.plan({"tuner/epochs": 1, "tuner/initial_epoch": 0}, 4, 32)
    promoted = budget.plan({"tuner/epochs": 3, "tuner/initial_epoch": 1,
                            "tuner/trial_id": "00"}, 4, 32)
    assert first.schedule_steps == promoted.schedule_steps == math.ceil(9_000 / 128)
    assert first.stop_step == math.ceil(1_000 / 128) == promoted.start_step
    assert promoted.stop_step == math.ceil(3_000 / 128)
    assert 3_000 <= promoted.model_tokens < 3_000 + 128
    assert promoted.tokens == promoted.model_tokens - first.model_tokens
    # KerasTuner's bracket sizes for max_epochs 9, factor 3: 9, 3, 1; 5, 2 (ceil 4.5, 1.5); 3.
    assert hyperband_trials(9, 3, 1) == (9 + 3 + 1) + (5 + 2) + 3
    assert hyperband_trials(3, 3, 2) == 2 * (3 + 1 + 2)
    assert bracket_trials(27, 3) == [27 + 9 + 3 + 1, 12 + 4 + 2, 6 + 2, 4]


def _tf_config(kind: str, index: int) -> str:
    return json.dumps({"cluster": {"chief": ["10.0.0.2:2222"],
                                   "worker": ["10.0.0.3:2222", "10.0.0.4:2222"]},
                       "task": {"type": kind, "index": index}})


def test_keras_tuner_variables_come_from_tf_config():
    from tuning.distributed import keras_tuner_env, role

    chief = keras_tuner_env({"TF_CONFIG": _tf_config("chief", 0)})
    worker = keras_tuner_env({"TF_CONFIG": _tf_config("worker", 1)})
    assert chief == {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "0.0.0.0",
                     "KERASTUNER_ORACLE_PORT": "2222"}
    assert worker == {"KERASTUNER_TUNER_ID": "worker1", "KERASTUNER_ORACLE_IP": "10.0.0.2",
                      "KERASTUNER_ORACLE_PORT": "2222"}
    assert (role(chief), role(worker), role({})) == ("chief", "worker", "single")


def test_keras_tuner_variables_from_vertex_cluster_spec_and_edge_cases():
    from tuning.distributed import keras_tuner_env

    spec = {"cluster": {"workerpool0": ["cmle-0:2222"], "workerpool1": ["cmle-1:2222"]},
            "task": {"type": "workerpool1", "index": 0}}
    assert keras_tuner_env({"CLUSTER_SPEC": json.dumps(spec)}) == {
        "KERASTUNER_TUNER_ID": "workerpool10", "KERASTUNER_ORACLE_IP": "cmle-0",
        "KERASTUNER_ORACLE_PORT": "2222"}
    one = {"cluster": {"chief": ["h:1"]}, "task": {"type": "chief", "index": 0}}
    assert keras_tuner_env({"TF_CONFIG": json.dumps(one)}) == {}
    assert keras_tuner_env({"TF_CONFIG": _tf_config("worker", 0),
                            "KERASTUNER_ORACLE_IP": "x"}) == {}
    assert keras_tuner_env({"TF_CONFIG": "not json"}) == {}


@pytest.mark.parametrize("environ, message", [
    ({"KERASTUNER_ORACLE_PORT": "8470"}, "KERASTUNER_ORACLE_PORT is set but "
                                         "KERASTUNER_ORACLE_IP is not"),
    ({"KERASTUNER_TUNER_ID": "worker0"}, "KERASTUNER_TUNER_ID is set but "
                                         "KERASTUNER_ORACLE_IP is not"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_TUNER_ID": "chief"},
     "KERASTUNER_ORACLE_PORT is not set"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8470"},
     "KERASTUNER_TUNER_ID is not set"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8470",
      "KERASTUNER_TUNER_ID": " "}, "KERASTUNER_TUNER_ID is not set"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "99999",
      "KERASTUNER_TUNER_ID": "chief"}, "KERASTUNER_ORACLE_PORT=99999: expected a port number"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "abc",
      "KERASTUNER_TUNER_ID": "worker0"}, "KERASTUNER_ORACLE_PORT=abc: expected a port number"),
])
def test_keras_tuner_variables_that_cannot_make_a_sweep_are_refused(environ, message):
    from pipeline.core.errors import UsageError
    from tuning.distributed import role

    with pytest.raises(UsageError, match=message):
        role(environ)


def test_a_bad_keras_tuner_variable_stops_lmpipe_tune_before_any_step(tiny_config_file):
    from tests.conftest import run_lmpipe

    result = run_lmpipe("tune", "--config", tiny_config_file,
                        "--set", "tuning.space={batch_size: [8]}", env_update={"KERASTUNER_ORACLE_PORT": "8470"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "lmpipe: error: KERASTUNER_ORACLE_PORT is set but KERASTUNER_ORACLE_IP is not: a "
        "parallel sweep needs KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT and "
        "KERASTUNER_TUNER_ID"]


def test_tuning_is_for_language_models(tmp_path):
    raw = helpers.raw_config(tmp_path)
    raw["task"] = {"type": "classification"}
    raw["data"].update(label_field="domain", domain_field=None)
    with pytest.raises(ConfigError) as caught:
        helpers.build_config(raw)
    assert caught.value.key == "tuning.enabled"


def test_trial_values_override_nested_keys_and_are_validated(tmp_path):
    from tuning import space

    cfg = helpers.config(tmp_path)
    train, model = space.trial_configs({"train.distill.alpha": 0.25, "train.learning_rate": 0.002},
                                       cfg.train, cfg.model)
    assert (train.distill.alpha, train.learning_rate) == (0.25, 0.002)
    assert train.distill.temperature == cfg.train.distill.temperature
    assert model == cfg.model
    with pytest.raises(ConfigError, match=r"'train\.distill\.alpha': must be in \[0, 1\]"):
        space.trial_configs({"train.distill.alpha": 1.5}, cfg.train, cfg.model)


@pytest.mark.parametrize("key, expected", [
    ("train.distill.alpah", "no such key (known here: alpha, "),
    ("train.learning_rate.min", "train.learning_rate is not a section"),
    ("data.vocab_size", "data is not a section (tunable sections: model, train)"),
    ("train.distill", "it is a section; tune one of its keys (train.distill.alpha, "),
    ("learning_rate", "expected a dotted key such as train.learning_rate"),
])
def test_a_key_that_names_no_tunable_field_is_a_config_error_naming_it(tmp_path, key, expected):
    from tuning import space

    cfg = helpers.config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        space.trial_configs({key: 0.5}, cfg.train, cfg.model)
    assert caught.value.key == key
    assert expected in str(caught.value)
