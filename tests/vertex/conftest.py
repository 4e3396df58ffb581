"""Shared pieces of the Vertex tests: a Vertex setup, compiling, and reading the compiled spec.

Nothing here reaches Google Cloud. google-auth would probe the GCE metadata server when it
looks for credentials; NO_GCE_CHECK (read when google.auth is first imported) turns that off.
"""

from __future__ import annotations

import os

os.environ["NO_GCE_CHECK"] = "true"

import pytest  # noqa: E402
import yaml  # noqa: E402

from pipeline.cli import build_parser  # noqa: E402
from pipeline.core.configio import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_DAG = "tests.pipeline.fake_components:create_pipeline"
VERTEX_SETS = [
    "vertex.project=test-project",
    "vertex.image=us-central1-docker.pkg.dev/test-project/lmpipe/lmpipe:test",
    "vertex.pipeline_root=gs://test-bucket/root",
    "vertex.service_account=runner@test-project.iam.gserviceaccount.com",
    'data.inputs=["gs://test-bucket/corpus/*.jsonl"]',
    # Vertex steps open these as files: on the Cloud Storage mount.
    "pipeline.root=/gcs/test-bucket/lmpipe/root",
    "push.serving_dir=/gcs/test-bucket/lmpipe/serving",
]
LAUNCHER_IMAGE_PREFIX = "gcr.io/ml-pipeline/google-cloud-pipeline-components:"


@pytest.fixture(autouse=True)
def _no_cloud_credentials(monkeypatch, tmp_path):
    """No test may find (or use) the developer's own Google credentials."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


def default_config(*sets: str):
    """pipeline.yaml with a Vertex setup."""
    return load_config(os.path.join(REPO, "pipeline.yaml"), [*VERTEX_SETS, *sets])


def read_spec(path) -> dict:
    """The compiled spec as data (one YAML document)."""
    with open(path, encoding="utf-8") as f:
        documents = list(yaml.safe_load_all(f))
    assert len(documents) == 1
    return documents[0]


def component_of(spec: dict, task: str) -> dict:
    return spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]


def container_of(spec: dict, task: str) -> dict:
    """The kfp container that runs `task` (for a CustomJob task, the GCPC launcher)."""
    return spec["deploymentSpec"]["executors"][component_of(spec, task)["executorLabel"]]["container"]


def worker_pools(spec: dict, task: str) -> list[dict] | None:
    """The CustomJob worker pools of `task`, or None if it is a plain container task."""
    parameters = component_of(spec, task).get("inputDefinitions", {}).get("parameters", {})
    pools = parameters.get("worker_pool_specs")
    return None if pools is None else pools["defaultValue"]


def step_command(spec: dict, task: str) -> tuple[str, list[str], list[str]]:
    """(image, command, args) of the lmpipe process of `task`, also inside a CustomJob."""
    pools = worker_pools(spec, task)
    if pools is None:
        container = container_of(spec, task)
        return container["image"], container["command"], container["args"]
    inner = pools[0]["container_spec"]
    return inner["image_uri"], inner["command"], inner["args"]


def split_args(args: list[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Config arguments, and the --input and --output NAME=WHERE pairs."""
    first = next((i for i, a in enumerate(args) if a in ("--input", "--output")), len(args))
    pairs = {"--input": {}, "--output": {}}
    for flag, value in zip(args[first::2], args[first + 1::2]):
        name, _, where = value.partition("=")
        pairs[flag][name] = where
    return args[:first], pairs["--input"], pairs["--output"]


def config_from_args(name: str, config_args: list[str]):
    """The config a component process rebuilds from its arguments (parsed by the real CLI)."""
    parsed = build_parser().parse_args(["component", name, *config_args])
    return load_config(parsed.config, parsed.set)
