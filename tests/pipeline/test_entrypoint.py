"""One component run alone (what `python -m components.<name>` and a Vertex step execute)."""

from __future__ import annotations

import os

import pytest

from pipeline.entrypoint import parse_pairs, run_component
from pipeline.errors import UsageError
from pipeline.local_runner import ComponentFailed
from tests.conftest import build_config
from tests.pipeline import fake_components


def _config(tmp_path, seed=0):
    return build_config({"pipeline": {"root": str(tmp_path / "root")},
                         "data": {"inputs": ["unused"]}, "train": {"seed": seed}})


def test_components_chain_through_explicit_uris(tmp_path):
    config = _config(tmp_path)
    os.makedirs(config.pipeline.root)
    nodes = fake_components.nodes()
    a = str(tmp_path / "a")
    run_component("alpha", config, {}, {"out": a}, nodes=nodes)
    b = str(tmp_path / "b")
    result = run_component("beta", config, {"thing": a}, {"out": b}, nodes=nodes)
    assert result == {"out": {"uri": b, "properties": {"name": "beta"}}}
    with open(os.path.join(b, "value.txt")) as f:
        assert f.read() == "alphabeta"


def test_a_failing_component_is_one_line_with_its_traceback_kept(tmp_path):
    config = _config(tmp_path, seed=13)
    os.makedirs(config.pipeline.root)
    nodes = fake_components.nodes()
    run_component("alpha", config, {}, {"out": str(tmp_path / "a")}, nodes=nodes)
    run_component("beta", config, {"thing": str(tmp_path / "a")}, {"out": str(tmp_path / "b")},
                  nodes=nodes)
    with pytest.raises(ComponentFailed) as info:
        run_component("gamma", config, {"thing": str(tmp_path / "b")},
                      {"out": str(tmp_path / "c"), "extra": str(tmp_path / "d")}, nodes=nodes)
    assert str(info.value) == "component gamma failed: gamma failed half-way"
    with open(info.value.cause.log_path) as f:
        assert "Traceback" in f.read()


@pytest.mark.parametrize("inputs,outputs,fragment", [
    ({}, {"out": "x"}, "--input thing=URI is required"),
    ({"thing": "a"}, {}, "--output needed for out"),
    ({"thing": "a", "other": "b"}, {"out": "x"}, "unknown input/output other"),
    ({"thing": "/no/such/dir"}, {"out": "x"}, "--input thing=/no/such/dir: no such directory"),
])
def test_wrong_inputs_and_outputs_are_usage_errors(tmp_path, inputs, outputs, fragment):
    with pytest.raises(UsageError, match=fragment):
        run_component("beta", _config(tmp_path), inputs, outputs, nodes=fake_components.nodes())


def test_unknown_component_and_bad_pairs():
    with pytest.raises(UsageError, match="unknown"):
        run_component("nope", build_config({"data": {"inputs": ["x"]}}), {}, {},
                      nodes=fake_components.nodes())
    with pytest.raises(UsageError, match="expected NAME=URI"):
        parse_pairs(["novalue"], "--input")
