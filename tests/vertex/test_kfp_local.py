"""The same kfp pipeline definition run on this machine by kfp.local (subprocess runner).

Each task is a Python-function component that parses the arguments a Vertex container
would get and calls `pipeline.entrypoint.run_component`. The fake DAG of tests/pipeline
(three cheap components) checks the wiring; the real DAG runs once on the tiny corpus.
"""

from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from pipeline.vertex_runner import compile_pipeline, create_kfp_pipeline, run_kfp_local
from tests.components.data_fixtures import document_texts
from tests.conftest import build_config, tiny_documents, tiny_raw_config
from tests.vertex.conftest import FAKE_DAG, read_spec, split_args, step_command


def _config(tmp_path, seed: int = 7, mounted: bool = False):
    """The fake DAG's config; `mounted`: its directories on Vertex's Cloud Storage mount
    (compile only: there is no /gcs here)."""
    gcs = "/gcs/test-bucket"
    return build_config({
        "pipeline": {"name": "fake-kfp", "root": f"{gcs}/root" if mounted else str(tmp_path / "root")},
        "data": {"inputs": [f"{gcs}/corpus/*.jsonl" if mounted else "unused"]},
        "train": {"seed": seed},
        "push": {"serving_dir": f"{gcs}/serving" if mounted else str(tmp_path / "serving")},
        "vertex": {"image": "lmpipe:test", "project": "test-project",
                   "pipeline_root": "gs://test-bucket/r",
                   # The fake DAG has no Beam step.
                   "dataflow": {"runner": "DirectRunner", "steps": []}},
    })


@pytest.fixture(autouse=True)
def _outside_the_checkout(monkeypatch, tmp_path):
    """Run from elsewhere with no PYTHONPATH: the runner itself must let kfp.local's task
    processes import the project and the tests' own components."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)


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
    config = _config(tmp_path, mounted=True)
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
        assert command == ["lmpipe", "component", task]
        assert constants["argv"]["runtimeValue"]["constant"] == split_args(args)[0]


@pytest.mark.slow
def test_kfp_local_runs_the_real_dag_to_a_pushed_model(tmp_path):
    from components.ingest.cleaning import document_id, split_of
    from pipeline.core.contracts.serving_dir import saved_model_digest
    from pipeline.core.contracts.tokenizer import tokenizer_digest
    from tests.conftest import write_jsonl

    corpus = write_jsonl(tmp_path / "corpus" / "corpus.jsonl", tiny_documents()).parent
    config = build_config(tiny_raw_config(tmp_path, corpus))
    out = Path(_outputs(run_kfp_local(config), "ingest", "documents")).parent.parent

    # ingest: every document once, in the split its text hashes to.
    texts = document_texts(out / "ingest" / "documents")
    assert texts["train"] | texts["eval"] == {d["text"] for d in tiny_documents()}
    for split, members in texts.items():
        assert {split_of(document_id(t), config.data.split_salt, 0.2) for t in members} == {split}
    # tokenizer -> transform -> train: the model records the tokenizer the task wrote.
    tokenizer = out / "tokenizer" / "tokenizer"
    assert json.loads((tokenizer / "tokenizer.json").read_text())["vocab_size"] == 300
    examples = json.loads((out / "transform" / "examples" / "feature_spec.json").read_text())
    assert examples["sequence_length"] == 32
    model = out / "train" / "model"
    summary = json.loads((model / "train_summary.json").read_text())
    assert summary["steps"] == 30 and summary["sequence_length"] == 32
    assert summary["tokenizer"] == {"uri": str(tokenizer),
                                    "sha256": tokenizer_digest(str(tokenizer))}
    # evaluate: TFMA's numbers agree with each other and bless this very SavedModel.
    metrics = json.loads((out / "evaluate" / "evaluation" / "metrics.json").read_text())["overall"]
    assert math.isclose(metrics["perplexity"], math.exp(metrics["mean_nll"]), rel_tol=1e-6)
    assert 1.0 < metrics["perplexity"] < 300 and metrics["bits_per_byte"] > 0
    verdict = json.loads((out / "evaluate" / "blessing" / "blessing.json").read_text())
    digest = saved_model_digest(str(model / "saved_model"))
    assert verdict["blessed"] is True and verdict["baseline"] is None
    assert verdict["candidate"]["saved_model_sha256"] == digest
    # push: version 1 in the serving directory is the model kfp.local trained.
    pushed = json.loads((out / "push" / "pushed" / "push.json").read_text())
    serving = tmp_path / "serving"
    assert (pushed["pushed"], pushed["version"], pushed["uri"]) == (True, 1, str(serving / "1"))
    assert sorted(p.name for p in serving.iterdir()) == ["1"]
    assert saved_model_digest(str(serving / "1")) == digest
    card = json.loads((serving / "1" / "model_card.json").read_text())
    # The card shows paths relative to the step's working directory (`push.card_paths:
    # relative`, the default).
    for shown, path in ((card["model"]["uri"], model),
                        (card["data"]["tokenizer"]["uri"], tokenizer)):
        assert not os.path.isabs(shown) and str(path).endswith(os.sep + shown)
    assert card["metrics"] == metrics
