"""`lmpipe compile --target vertex`: the compiled spec against the local DAG and the config."""

from __future__ import annotations

import dataclasses
import os
import typing

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.core.config import TrainConfig, VertexMachineConfig
from pipeline.core.configio import load_config, to_dict
from pipeline.dag import create_pipeline
from pipeline.vertex.dataflow import dataflow_args
from pipeline.vertex_runner import compile_pipeline
from tests.conftest import run_lmpipe
from tests.vertex.conftest import (LAUNCHER_IMAGE_PREFIX, REPO, VERTEX_SETS, config_from_args,
                                   container_of, default_config, read_spec, split_args,
                                   step_command, worker_pools)

BEAM_STEPS = ("ingest", "transform", "evaluate")


def _compile(config, tmp_path) -> dict:
    return read_spec(compile_pipeline(config, str(tmp_path / "spec.yaml")))


def _without_orchestrator(config) -> dict:
    raw = to_dict(config)
    return {k: v for k, v in raw.items() if k not in ("vertex", "schedule")}


def test_spec_parses_into_kfp_pipeline_spec(tmp_path):
    config = default_config()
    spec = _compile(config, tmp_path)
    message = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert message.pipeline_info.name == "lmpipe-demo"
    assert message.default_pipeline_root == "gs://test-bucket/root"
    assert set(message.root.dag.tasks) == {n.name for n in create_pipeline(config) if n.enabled}


@pytest.mark.parametrize("tuning", [False, True])
def test_task_graph_equals_the_local_dag(tmp_path, tuning):
    config = default_config(f"tuning.enabled={str(tuning).lower()}")
    tasks = _compile(config, tmp_path)["root"]["dag"]["tasks"]
    nodes = [n for n in create_pipeline(config) if n.enabled]
    assert set(tasks) == {n.name for n in nodes}
    enabled = {n.name for n in nodes}
    for node in nodes:
        wired = {name: source for name, source in node.wiring.items() if source[0] in enabled}
        artifacts = tasks[node.name].get("inputs", {}).get("artifacts", {})
        got = {name: (a["taskOutputArtifact"]["producerTask"], a["taskOutputArtifact"]["outputArtifactKey"])
               for name, a in artifacts.items()}
        assert got == wired, node.name
        # and train (and tune) wait for the data validation without taking its outputs
        assert set(tasks[node.name].get("dependentTasks", [])) == (
            {s[0] for s in wired.values()} | {name for name in node.after if name in enabled})
    # The optional tuned hyperparameters reach train exactly when tune runs.
    assert ("hyperparameters" in tasks["train"]["inputs"]["artifacts"]) is tuning


def test_each_task_runs_its_component_entry_point_with_the_compiled_config(tmp_path):
    config = default_config()
    spec = _compile(config, tmp_path)
    beam_args = list(dataflow_args(config))
    for node in create_pipeline(config):
        if not node.enabled:
            continue
        image, command, args = step_command(spec, node.name)
        assert image == config.vertex.image
        assert command == ["lmpipe", "component", node.name]
        config_args, inputs, outputs = split_args(args)
        rebuilt = config_from_args(node.name, config_args)
        expected = _without_orchestrator(config)
        if node.name in BEAM_STEPS:
            expected["pipeline"]["beam_args"] = beam_args
        assert _without_orchestrator(rebuilt) == expected, node.name
        # Beam steps on Dataflow get gs:// URIs; the others the /gcs/ mount (path).
        kind = "uri" if node.name in BEAM_STEPS else "path"
        assert outputs == {o: f"{{{{$.outputs.artifacts['{o}'].{kind}}}}}" for o in node.spec.outputs}
        assert inputs == {i: f"{{{{$.inputs.artifacts['{i}'].{kind}}}}}"
                          for i, (upstream, _) in node.wiring.items() if upstream != "tune"}


def test_dataflow_options_on_beam_steps_only(tmp_path):
    config = default_config("vertex.dataflow.machine_type=n2-highmem-4",
                            "vertex.dataflow.max_num_workers=7")
    spec = _compile(config, tmp_path)
    for name in ("ingest", "tokenizer", "transform", "train", "evaluate", "push"):
        _, _, args = step_command(spec, name)
        beam_args = config_from_args(name, split_args(args)[0]).pipeline.beam_args
        if name not in BEAM_STEPS:
            assert beam_args == config.pipeline.beam_args, name
            continue
        assert beam_args == (
            "--direct_running_mode=in_memory", "--runner=DataflowRunner", "--project=test-project",
            "--region=us-central1", "--temp_location=gs://test-bucket/root/dataflow/tmp",
            "--staging_location=gs://test-bucket/root/dataflow/staging",
            f"--sdk_container_image={config.vertex.image}", "--machine_type=n2-highmem-4",
            "--max_num_workers=7",
            "--service_account_email=runner@test-project.iam.gserviceaccount.com"), name


def test_direct_runner_keeps_beam_inside_the_task(tmp_path):
    config = default_config("vertex.dataflow.runner=DirectRunner")
    spec = _compile(config, tmp_path)
    _, _, args = step_command(spec, "transform")
    config_args, inputs, _ = split_args(args)
    assert config_from_args("transform", config_args).pipeline.beam_args == config.pipeline.beam_args
    assert inputs["documents"] == "{{$.inputs.artifacts['documents'].path}}"


def test_setup_file_replaces_the_sdk_container_image(tmp_path):
    config = default_config("vertex.dataflow.setup_file=/app/setup.py")
    _, _, args = step_command(_compile(config, tmp_path), "ingest")
    beam_args = config_from_args("ingest", split_args(args)[0]).pipeline.beam_args
    assert "--setup_file=/app/setup.py" in beam_args
    assert not any(a.startswith("--sdk_container_image") for a in beam_args)


def test_train_runs_as_a_vertex_custom_job_with_its_machine(tmp_path):
    config = default_config("vertex.train.machine_type=a2-highgpu-2g",
                            "vertex.train.accelerator_type=NVIDIA_TESLA_A100",
                            "vertex.train.accelerator_count=2", "vertex.labels=[team=ml]")
    spec = _compile(config, tmp_path)
    assert container_of(spec, "train")["image"].startswith(LAUNCHER_IMAGE_PREFIX)
    pools = worker_pools(spec, "train")
    assert len(pools) == 1
    assert pools[0]["replica_count"] == 1
    assert pools[0]["machine_spec"] == {"machine_type": "a2-highgpu-2g",
                                        "accelerator_type": "NVIDIA_TESLA_A100",
                                        "accelerator_count": 2}
    assert pools[0]["disk_spec"]["boot_disk_size_gb"] == 100
    parameters = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    assert parameters["service_account"]["defaultValue"] == config.vertex.service_account
    assert parameters["labels"]["defaultValue"] == {"team": "ml"}
    # The other steps are plain container tasks.
    assert all(worker_pools(spec, n) is None for n in ("ingest", "tokenizer", "transform",
                                                       "evaluate", "push"))


def test_tune_gets_its_own_machine(tmp_path):
    config = default_config("tuning.enabled=true", "vertex.tune.machine_type=n1-highmem-16",
                            "vertex.train.machine_type=g2-standard-8",
                            "vertex.train.accelerator_type=NVIDIA_L4")
    spec = _compile(config, tmp_path)
    assert worker_pools(spec, "tune")[0]["machine_spec"] == {"machine_type": "n1-highmem-16"}
    assert worker_pools(spec, "train")[0]["machine_spec"]["accelerator_type"] == "NVIDIA_L4"


def test_replicas_are_a_chief_pool_and_a_worker_pool():
    from pipeline.vertex.kfp_components import container_component, custom_job_component
    from pipeline.vertex.steps import Step

    config = default_config()
    step = Step(name="train", inputs={}, input_types={},
                outputs={"model": "Model"}, argv=("--config", "/dev/null"))
    machine = VertexMachineConfig(machine_type="ct5lp-hightpu-4t", replica_count=3,
                                  tpu_topology="4x4")
    job = custom_job_component(container_component(step, config.vertex.image), step, machine,
                               config.vertex)
    pools = job.component_spec.inputs["worker_pool_specs"].default
    assert [p["replica_count"] for p in pools] == [1, 2]
    for pool in pools:
        assert pool["machine_spec"] == {"machine_type": "ct5lp-hightpu-4t", "tpu_topology": "4x4"}
        assert pool["container_spec"]["command"] == ["lmpipe", "component", "train"]


@pytest.mark.skipif("multi_worker" not in typing.get_args(
    typing.get_type_hints(TrainConfig)["strategy"]), reason="train.strategy multi_worker not there yet")
def test_multi_worker_compiles_to_chief_and_workers(tmp_path):
    config = default_config("train.strategy=multi_worker", "vertex.train.replica_count=4")
    pools = worker_pools(_compile(config, tmp_path), "train")
    assert [p["replica_count"] for p in pools] == [1, 3]


def _cached_steps(config, tmp_path) -> set[str]:
    tasks = _compile(config, tmp_path)["root"]["dag"]["tasks"]
    return {name for name, task in tasks.items()
            if task["cachingOptions"].get("enableCache", False)}


def test_caching_is_off_for_steps_that_read_outside_the_dag(tmp_path):
    # ingest reads data.inputs and evaluate the model in service: Vertex cannot see either change.
    assert _cached_steps(default_config(), tmp_path) == {"tokenizer", "transform", "validate",
                                                         "train", "push"}


def test_warm_start_from_the_model_in_service_turns_caching_off_for_train(tmp_path):
    # train loads the model in service, and tokenizer copies its tokenizer once there is one.
    config = default_config("train.warm_start=latest_pushed")
    assert _cached_steps(config, tmp_path) == {"transform", "validate", "push"}


def test_vertex_overlay_compiles_through_the_cli(tmp_path):
    output = tmp_path / "vertex_pipeline.yaml"
    result = run_lmpipe("compile", "--target", "vertex", "--config", "configs/vertex.yaml",
                        "--output", output)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(output)
    config = load_config(os.path.join(REPO, "configs", "vertex.yaml"))
    spec = read_spec(output)
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert spec["defaultPipelineRoot"] == "gs://my-lmpipe-bucket/lmpipe/pipeline_root"
    train = worker_pools(spec, "train")[0]
    assert train["machine_spec"] == {"machine_type": "g2-standard-24",
                                     "accelerator_type": "NVIDIA_L4", "accelerator_count": 2}
    assert train["container_spec"]["image_uri"] == config.vertex.image
    _, _, args = step_command(spec, "ingest")
    beam_args = config_from_args("ingest", split_args(args)[0]).pipeline.beam_args
    assert "--machine_type=n2-standard-8" in beam_args and "--max_num_workers=20" in beam_args
    assert "--project=my-project" in beam_args
    for name in ("ingest", "tokenizer", "transform", "evaluate", "push"):
        resources = container_of(spec, name)["resources"]
        assert resources["cpuLimit"] == 8.0 and resources["memoryLimit"] == 32.0, name


def test_compile_without_an_image_is_a_config_error(tmp_path):
    sets = [s for s in VERTEX_SETS if not s.startswith("vertex.image")]
    args = [a for s in sets for a in ("--set", s)]
    result = run_lmpipe("compile", "--config", "pipeline.yaml", *args, "--output", tmp_path / "x.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lmpipe: error: config key 'vertex.image': is required for --target vertex (the image "
        "built from the Dockerfile, e.g. REGION-docker.pkg.dev/PROJECT/REPO/lmpipe:TAG)"]
    assert not (tmp_path / "x.yaml").exists()


def test_same_config_compiles_to_the_same_spec(tmp_path):
    config = default_config()
    first = _compile(config, tmp_path / "a")
    second = _compile(dataclasses.replace(config), tmp_path / "b")
    first.pop("sdkVersion"), second.pop("sdkVersion")
    assert first == second
