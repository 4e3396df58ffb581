"""`model.*` for the three families: resolved defaults, and bad combinations as exit-2 errors."""

from __future__ import annotations

import pytest

from pipeline.core.errors import ConfigError
from tests.conftest import build_config, run_lmpipe, tiny_raw_config


def _raw(tmp_path, **model):
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["model"].update(model)
    return raw


@pytest.mark.parametrize("family, objective, tied", [
    ("gpt", "causal", False), ("llama", "causal", False), ("bert", "masked", True)])
def test_family_defaults(tmp_path, family, objective, tied):
    model = build_config(_raw(tmp_path, family=family)).model
    assert (model.training_objective, model.tied_embeddings) == (objective, tied)
    assert model.num_kv_heads is None


@pytest.mark.parametrize("model, key, fragment", [
    ({"family": "llama", "num_heads": 4, "hidden_dim": 32, "num_kv_heads": 3},
     "model.num_kv_heads", "must divide model.num_heads (4), got 3"),
    ({"family": "llama", "num_kv_heads": 0}, "model.num_kv_heads", "must be > 0"),
    ({"family": "gpt", "num_kv_heads": 1}, "model.num_kv_heads", "is a llama option"),
    ({"family": "llama", "num_heads": 4, "hidden_dim": 12}, "model.hidden_dim",
     "even head dim for rotary positions (hidden_dim / num_heads = 3)"),
    ({"family": "bert", "objective": "causal"}, "model.objective",
     "must be 'masked' or 'auto' for model.family 'bert'"),
    ({"family": "llama", "objective": "masked"}, "model.objective",
     "must be 'causal' or 'auto' for model.family 'llama'"),
    ({"family": "t5"}, "model.family", "gpt"),
    ({"max_sequence_length": 16}, "transform.sequence_length",
     "must be <= model.max_sequence_length (16), got 32"),
])
def test_bad_model_configs_are_config_errors(tmp_path, model, key, fragment):
    with pytest.raises(ConfigError) as info:
        build_config(_raw(tmp_path, **model))
    assert info.value.key == key
    assert fragment in str(info.value)


@pytest.mark.parametrize("sets, fragment", [
    (["model.family=bert", "model.objective=causal"], "config key 'model.objective'"),
    (["model.family=llama", "model.num_heads=2", "model.num_kv_heads=3"],
     "config key 'model.num_kv_heads'"),
    (["model.max_sequence_length=16"], "config key 'transform.sequence_length'"),
])
def test_cli_refuses_before_reading_any_data(tiny_config_file, tmp_path, sets, fragment):
    args = [arg for value in sets for arg in ("--set", value)]
    result = run_lmpipe("run", "--config", tiny_config_file, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "root").exists(), "nothing ran"
