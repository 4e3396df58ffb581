"""The compression keys of the config tree: defaults, YAML, and one-line errors."""

from __future__ import annotations

import re

import pytest
import yaml

from pipeline.core.errors import ConfigError
from tests.conftest import build_config, run_lmpipe, tiny_raw_config

BASE = {"data": {"inputs": ["corpus/*.jsonl"]}}


def test_defaults_leave_compression_off():
    config = build_config(BASE)
    assert config.train.distill.teacher is None
    assert (config.train.distill.alpha, config.train.distill.temperature) == (0.5, 1.0)
    assert config.train.prune.target_sparsity is None
    assert config.train.quantize == "none" and config.push.variant == "float"


def test_the_contract_keys_and_the_rest_parse():
    config = build_config({**BASE, "train": {
        "steps": 200,
        "distill": {"teacher": "latest_pushed", "alpha": 0.7, "temperature": 2},
        "prune": {"target_sparsity": 0.5, "initial_sparsity": 0.1, "begin_step": 10,
                   "end_step": 150, "frequency": 20, "power": 2},
        "quantize": "int8"}, "push": {"variant": "quantized"}})
    distill, prune = config.train.distill, config.train.prune
    assert (distill.teacher, distill.alpha, distill.temperature) == ("latest_pushed", 0.7, 2.0)
    assert (prune.target_sparsity, prune.initial_sparsity, prune.begin_step, prune.end_step,
            prune.frequency, prune.power) == (0.5, 0.1, 10, 150, 20, 2.0)
    assert config.push.variant == "quantized"


@pytest.mark.parametrize("raw, message", [
    ({"train": {"distill": {"alpha": 1.5}}}, "'train.distill.alpha': must be in [0, 1], got 1.5"),
    ({"train": {"distill": {"temperature": 0}}}, "'train.distill.temperature': must be > 0"),
    ({"train": {"distill": {"teacher": " "}}}, "'train.distill.teacher': must be a path"),
    ({"train": {"distill": {"teachr": "x"}}}, "'train.distill.teachr': unknown key"),
    ({"train": {"prune": {"target_sparsity": 1.0}}},
     "'train.prune.target_sparsity': must be in (0, 1), got 1.0"),
    ({"train": {"prune": {"target_sparsity": 0.3, "initial_sparsity": 0.5}}},
     "'train.prune.initial_sparsity': must be in [0, prune.target_sparsity (0.3)], got 0.5"),
    ({"train": {"prune": {"target_sparsity": 0.3, "begin_step": 50, "end_step": 50}}},
     "'train.prune.end_step': must be > prune.begin_step (50), got 50"),
    ({"train": {"steps": 100, "prune": {"target_sparsity": 0.3, "end_step": 101}}},
     "'train.prune.end_step': must be <= train.steps (100), got 101"),
    ({"train": {"prune": {"target_sparsity": 0.3, "frequency": 0}}},
     "'train.prune.frequency': must be > 0"),
    ({"train": {"quantize": "int4"}},
     "'train.quantize': expected one of none, int8, int8_weights, got 'int4'"),
    ({"push": {"variant": "quantized"}},
     "'push.variant': 'quantized' needs train.quantize int8 or int8_weights"),
])
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError, match="config key " + re.escape(message)):
        build_config({**BASE, **raw})


def test_a_bad_value_on_the_command_line_exits_2_with_one_line(tmp_path, tiny_corpus):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(tiny_raw_config(tmp_path, tiny_corpus)))
    result = run_lmpipe("run", "--config", path, "--set", "train.distill.alpha=2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lmpipe: error: config key 'train.distill.alpha': must be in [0, 1], got 2.0"]
