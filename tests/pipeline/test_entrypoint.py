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


# --- the serving directory is never a step's output (issue 21, break 2) ---

def _push_config(tmp_path, serving):
    return build_config({"pipeline": {"root": str(tmp_path / "root")},
                         "data": {"inputs": ["unused"]}, "push": {"serving_dir": str(serving)}})


def _push_inputs(tmp_path) -> dict:
    """Input directories for push (the refusals come before anything reads them)."""
    for name in ("model", "blessing"):
        os.makedirs(tmp_path / name, exist_ok=True)
    return {"model": str(tmp_path / "model"), "blessing": str(tmp_path / "blessing")}


@pytest.mark.parametrize("relation, output", [
    ("is", "serving"), ("is inside", "serving/out"), ("holds", ".")])
def test_an_output_that_is_inside_or_holds_the_serving_directory_is_refused(
        tmp_path, relation, output):
    serving = tmp_path / "serving"
    (serving / "1").mkdir(parents=True)
    (serving / "1" / "saved_model.pb").write_bytes(b"in service")
    uri = os.path.normpath(tmp_path / output)
    with pytest.raises(UsageError) as info:
        run_component("push", _push_config(tmp_path, serving), _push_inputs(tmp_path),
                      {"pushed": uri})
    assert str(info.value) == (
        f"component push: --output pushed={uri}: {relation} push.serving_dir ({serving}), "
        "whose versions are in service; give another directory")
    assert sorted(os.listdir(serving)) == ["1"] and not os.path.exists(serving / "out")


def test_emptying_an_earlier_output_never_removes_a_serving_version(tmp_path):
    # What an earlier `--output pushed=<serving directory>` left: push's own mark beside
    # the versions it pushed. Another serving directory is configured now.
    earlier = tmp_path / "earlier"
    (earlier / "3").mkdir(parents=True)
    (earlier / "3" / "saved_model.pb").write_bytes(b"in service")
    (earlier / ".lmpipe-output.json").write_text(json.dumps({"component": "push",
                                                              "complete": True}))
    with pytest.raises(UsageError) as info:
        run_component("push", _push_config(tmp_path, tmp_path / "serving"),
                      _push_inputs(tmp_path), {"pushed": str(earlier)})
    assert str(info.value) == (
        f"component push: --output pushed={earlier}: holds the serving version {earlier / '3'}, "
        "which emptying it would take out of service; give a new or empty directory")
    assert (earlier / "3" / "saved_model.pb").read_bytes() == b"in service"


def test_lmpipe_component_push_into_the_serving_directory_exits_2_in_one_line(tmp_path):
    import yaml

    from pipeline.core.contracts import serving_dir
    from tests import lm_fixtures as lm
    from tests.conftest import run_lmpipe

    model, blessing, serving = tmp_path / "model", tmp_path / "blessing", tmp_path / "serving"
    lm.write_bigram_model(model, seed=1, sequence_length=16)
    blessing.mkdir()
    (blessing / "blessing.json").write_text(json.dumps({"blessed": True, "candidate": {
        "saved_model_sha256": serving_dir.saved_model_digest(str(model / "saved_model"))}}))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"pipeline": {"root": str(tmp_path / "root")},
                                      "data": {"inputs": ["unused"]},
                                      "push": {"serving_dir": str(serving)}}))
    result = run_lmpipe("component", "push", "--config", config, "--input", f"model={model}",
                        "--input", f"blessing={blessing}", "--output", f"pushed={serving}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"lmpipe: error: component push: --output pushed={serving}: is push.serving_dir "
        f"({serving}), whose versions are in service; give another directory"]
    assert not serving.exists()
