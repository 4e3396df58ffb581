"""The same kfp pipeline definition run on this machine by kfp.local (subprocess runner).

The DAG is the fake one of tests/pipeline (three cheap components); each task is a
Python-function component that parses the arguments a Vertex container would get and
calls `pipeline.entrypoint.run_component`.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
import yaml
from kfp import compiler

from pipeline.vertex_runner import compile_pipeline, create_kfp_pipeline, run_kfp_local
from tests.conftest import REPO, build_config
from tests.vertex.conftest import FAKE_DAG, read_spec, split_args, step_command


def _config(tmp_path, seed: int = 7):
    return build_config({
        "pipeline": {"name": "fake-kfp", "root": str(tmp_path / "root")},
        "data": {"inputs": ["unused"]},
        "train": {"seed": seed},
        "vertex": {"image": "lmpipe:test", "project": "p", "pipeline_root": "gs://b/r",
                   "dataflow": {"runner": "DirectRunner", "steps": ["alpha"]}},
    })


@pytest.fixture(autouse=True)
def _project_on_path(monkeypatch):
    """kfp.local's task processes import the project (and the fake components) from here."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(REPO)


def _outputs(root: str, task: str, output: str) -> str:
    (path,) = glob.glob(os.path.join(root, "*", task, output))
    return path


def test_kfp_local_runs_the_dag_through_the_entry_point(tmp_path):
    config = _config(tmp_path)
    root = run_kfp_local(config, dag=FAKE_DAG)
    with open(os.path.join(config.pipeline.root, "calls.log"), encoding="utf-8") as f:
        assert f.read().split() == ["alpha", "beta", "gamma"]
    # Each task read its upstream's artifact through the wiring.
    with open(os.path.join(_outputs(root, "gamma", "out"), "value.txt"), encoding="utf-8") as f:
        assert f.read() == "alphabetagamma"
    # The config reached the component through --config/--set: gamma saw train.seed.
    with open(os.path.join(_outputs(root, "gamma", "extra"), "sections.json"), encoding="utf-8") as f:
        assert json.load(f) == {"train": 7}


def test_a_failing_task_fails_the_kfp_local_run(tmp_path):
    config = _config(tmp_path, seed=13)
    with pytest.raises(RuntimeError, match="FAILURE"):
        run_kfp_local(config, dag=FAKE_DAG)
    with open(os.path.join(config.pipeline.root, "calls.log"), encoding="utf-8") as f:
        assert f.read().split() == ["alpha", "beta", "gamma"]


def test_local_tasks_get_the_arguments_of_the_vertex_containers(tmp_path):
    config = _config(tmp_path)
    vertex = read_spec(compile_pipeline(config, str(tmp_path / "vertex.yaml"), dag=FAKE_DAG))
    local_path = tmp_path / "local.yaml"
    compiler.Compiler().compile(create_kfp_pipeline(config, target="local", dag=FAKE_DAG),
                                package_path=str(local_path))
    with open(local_path, encoding="utf-8") as f:
        local = yaml.safe_load(f)
    for task in ("alpha", "beta", "gamma"):
        constants = local["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
        assert constants["dag"]["runtimeValue"]["constant"] == FAKE_DAG
        _, command, args = step_command(vertex, task)
        assert command == ["python", "-m", "tests.pipeline.fake_components"]
        assert constants["argv"]["runtimeValue"]["constant"] == split_args(args)[0]
