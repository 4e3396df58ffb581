"""One component run alone (what `lmpipe component NAME` and a Vertex step execute)."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.entrypoint import parse_pairs, run_component
from pipeline.core.errors import UsageError
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


# --- output directories: a rerun that fails leaves nothing that looks complete ---

def _mark(directory) -> dict:
    with open(os.path.join(directory, ".lmpipe-output.json")) as f:
        return json.load(f)


def test_a_failed_rerun_empties_the_earlier_output_and_is_refused_downstream(tmp_path):
    nodes = fake_components.nodes()
    good, failing = _config(tmp_path), _config(tmp_path, seed=13)
    os.makedirs(good.pipeline.root)
    a, b, c, d = (str(tmp_path / name) for name in "abcd")
    run_component("alpha", good, {}, {"out": a}, nodes=nodes)
    run_component("beta", good, {"thing": a}, {"out": b}, nodes=nodes)
    run_component("gamma", good, {"thing": b}, {"out": c, "extra": d}, nodes=nodes)
    assert _mark(c) == {"component": "gamma", "complete": True}
    assert os.path.exists(os.path.join(d, "sections.json"))

    with pytest.raises(ComponentFailed):  # writes out/value.txt, then fails before extra
        run_component("gamma", failing, {"thing": b}, {"out": c, "extra": d}, nodes=nodes)
    assert os.listdir(d) == [".lmpipe-output.json"]  # the first run's sections.json is gone
    assert _mark(c) == _mark(d) == {"component": "gamma", "complete": False}
    with pytest.raises(UsageError, match=f"--input thing={c}: gamma did not finish writing it"):
        run_component("beta", good, {"thing": c}, {"out": str(tmp_path / "e")}, nodes=nodes)

    run_component("gamma", good, {"thing": b}, {"out": c, "extra": d}, nodes=nodes)
    assert _mark(d) == {"component": "gamma", "complete": True}
    assert sorted(os.listdir(d)) == [".lmpipe-output.json", "sections.json"]


@pytest.mark.parametrize("owner", ["user", "alpha"])
def test_an_output_holding_other_files_is_refused_and_kept(tmp_path, owner):
    config = _config(tmp_path)
    os.makedirs(config.pipeline.root)
    nodes = fake_components.nodes()
    a, mine = str(tmp_path / "a"), tmp_path / "mine"
    run_component("alpha", config, {}, {"out": a}, nodes=nodes)
    if owner == "user":
        mine.mkdir()
        (mine / "notes.txt").write_text("keep me")
        held = "files lmpipe did not write"
    else:
        run_component("alpha", config, {}, {"out": str(mine)}, nodes=nodes)
        held = "alpha's output"
    before = sorted(os.listdir(mine))
    with pytest.raises(UsageError, match=f"--output out={mine}: holds {held}; give a new"):
        run_component("beta", config, {"thing": a}, {"out": str(mine)}, nodes=nodes)
    assert sorted(os.listdir(mine)) == before


def test_outputs_are_checked_before_any_is_emptied(tmp_path):
    config = _config(tmp_path)
    os.makedirs(config.pipeline.root)
    nodes = fake_components.nodes()
    a, b, c, d = (str(tmp_path / name) for name in "abcd")
    run_component("alpha", config, {}, {"out": a}, nodes=nodes)
    run_component("beta", config, {"thing": a}, {"out": b}, nodes=nodes)
    run_component("gamma", config, {"thing": b}, {"out": c, "extra": d}, nodes=nodes)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("keep")
    with pytest.raises(UsageError, match="--output extra="):
        run_component("gamma", config, {"thing": b}, {"out": c, "extra": str(foreign)},
                      nodes=nodes)
    assert _mark(c)["complete"] is True and os.path.exists(os.path.join(c, "value.txt"))


@pytest.mark.parametrize("variable, value", [
    ("TF_CONFIG", json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                              "task": {"type": "worker", "index": 0}})),
    ("KERASTUNER_TUNER_ID", "worker0")])
def test_a_replica_other_than_the_chief_leaves_the_outputs_alone(tmp_path, monkeypatch,
                                                                 variable, value):
    config = _config(tmp_path)
    os.makedirs(config.pipeline.root)
    nodes = fake_components.nodes()
    a = str(tmp_path / "a")
    run_component("alpha", config, {}, {"out": a}, nodes=nodes)
    out = tmp_path / "b"
    out.mkdir()
    (out / "chief.txt").write_text("the chief's")
    monkeypatch.setenv(variable, value)
    run_component("beta", config, {"thing": a}, {"out": str(out)}, nodes=nodes)
    assert (out / "chief.txt").read_text() == "the chief's"
    assert not (out / ".lmpipe-output.json").exists()
