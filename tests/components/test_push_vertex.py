"""push.vertex: a pushed version -> the Vertex AI Model Registry and an endpoint, up to the wire.

The requests are built by `components/push/vertex.py` and sent through the service clients;
the only stand-ins are those clients (`RecordingModels`, `RecordingEndpoints`), so what is
checked is the exact message Vertex would get. Nothing reaches Google Cloud.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

os.environ["NO_GCE_CHECK"] = "true"

import pytest  # noqa: E402
from google.api_core import exceptions  # noqa: E402
from google.cloud import aiplatform_v1 as api  # noqa: E402

from components.push import vertex  # noqa: E402
from pipeline.core.configio import load_config  # noqa: E402
from pipeline.core.errors import ConfigError  # noqa: E402
from pipeline.core.gcloud import CloudError, anonymous_credentials  # noqa: E402
from tests.conftest import REPO  # noqa: E402

PARENT = "projects/test-project/locations/europe-west4"
MODEL = f"{PARENT}/models/987"
SETS = ["push.vertex.enabled=true", "push.vertex.project=test-project",
        "push.vertex.location=europe-west4",
        "push.vertex.image=europe-west4-docker.pkg.dev/test-project/lmpipe/serving:1",
        "push.vertex.artifact_root=gs://test-bucket/models", "push.vertex.endpoint=chat",
        "push.vertex.traffic_percentage=20", "push.vertex.max_replicas=3"]
CARD = {"version": 7, "run_id": "run-42", "model": {"saved_model_sha256": "ab" * 32}}


class Done:
    """A finished long-running operation."""

    def __init__(self, response):
        self.response = response

    def result(self, timeout=None):
        return self.response


class RecordingModels:
    """Stands in for the ModelServiceClient: keeps each request."""

    def __init__(self, existing=(), fail=None):
        self.requests, self.existing, self.fail = [], list(existing), fail

    def list_models(self, request):
        self.requests.append(("list_models", request))
        return [api.Model(name=name) for name in self.existing]

    def upload_model(self, request):
        self.requests.append(("upload_model", request))
        if self.fail:
            raise self.fail
        return Done(api.UploadModelResponse(model=request.parent_model or MODEL,
                                            model_version_id="3"))


class RecordingEndpoints:
    """Stands in for the EndpointServiceClient: keeps each request."""

    def __init__(self, existing=None):
        self.requests, self.existing = [], existing

    def list_endpoints(self, request):
        self.requests.append(("list_endpoints", request))
        return [self.existing] if self.existing else []

    def create_endpoint(self, request):
        self.requests.append(("create_endpoint", request))
        return Done(api.Endpoint(name=f"{PARENT}/endpoints/555",
                                 display_name=request.endpoint.display_name))

    def deploy_model(self, request):
        self.requests.append(("deploy_model", request))
        return Done(api.DeployModelResponse(deployed_model=api.DeployedModel(id="4444")))


def _config(tmp_path, *sets):
    section = load_config(os.path.join(REPO, "pipeline.yaml"), [*SETS, *sets]).push.vertex
    # A local directory stands in for the bucket: the copy goes through Beam's filesystems,
    # which serve gs:// and local paths alike.
    object.__setattr__(section, "artifact_root", str(tmp_path / "bucket"))
    return section


def _version(tmp_path):
    version = tmp_path / "serving" / "7"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"graph")
    (version / "variables" / "variables.index").write_bytes(b"index")
    return str(version)


def _deploy(tmp_path, models, endpoints, *sets):
    lines = []
    record = vertex.deploy(_version(tmp_path), CARD, _config(tmp_path, *sets), lines.append,
                           {"models": models, "endpoints": endpoints})
    return record, lines


def test_new_model_upload_and_deploy_to_a_new_endpoint(tmp_path):
    models, endpoints = RecordingModels(), RecordingEndpoints()
    record, lines = _deploy(tmp_path, models, endpoints)
    (_, listed), (_, upload) = models.requests
    assert listed == {"parent": PARENT, "filter": 'display_name="lmpipe"'}
    assert upload.parent == PARENT and upload.parent_model == ""
    sent = upload.model
    copy = str(tmp_path / "bucket" / f"7-{'ab' * 6}")
    assert (sent.display_name, sent.artifact_uri) == ("lmpipe", copy)
    assert sent.container_spec.image_uri == "europe-west4-docker.pkg.dev/test-project/lmpipe/serving:1"
    assert [p.container_port for p in sent.container_spec.ports] == [8080]
    assert (sent.container_spec.predict_route, sent.container_spec.health_route) == ("/predict", "/health")
    assert dict(sent.labels) == {"lmpipe-version": "7", "lmpipe-saved-model": "ab" * 6}
    # The copy is a serving directory of the one version: what `lmpipe serve --model` reads.
    with open(os.path.join(copy, "7", "variables", "variables.index"), "rb") as f:
        assert f.read() == b"index"
    (_, found), (_, created), (_, deployed) = endpoints.requests
    assert found == {"parent": PARENT, "filter": 'display_name="chat"'}
    assert created.endpoint.display_name == "chat"
    assert deployed.endpoint == f"{PARENT}/endpoints/555"
    assert deployed.deployed_model.model == f"{MODEL}@3"
    resources = deployed.deployed_model.dedicated_resources
    assert (resources.machine_spec.machine_type, resources.min_replica_count,
            resources.max_replica_count) == ("n1-standard-4", 1, 3)
    # Nothing else is deployed there: the new version takes all the traffic.
    assert dict(deployed.traffic_split) == {"0": 100}
    assert record == {"deployed": True, "artifact_uri": copy, "model": MODEL,
                      "model_version_id": "3", "endpoint": f"{PARENT}/endpoints/555",
                      "deployed_model_id": "4444", "traffic_split": {"4444": 100}}
    assert any("creating the Vertex AI endpoint chat" in line for line in lines)


def test_new_version_of_the_registry_model_takes_its_traffic_share(tmp_path):
    existing = api.Endpoint(name=f"{PARENT}/endpoints/555", display_name="chat",
                            traffic_split={"111": 60, "222": 40})
    models, endpoints = RecordingModels(existing=[MODEL]), RecordingEndpoints(existing)
    record, _ = _deploy(tmp_path, models, endpoints)
    assert models.requests[1][1].parent_model == MODEL
    assert [name for name, _ in endpoints.requests] == ["list_endpoints", "deploy_model"]
    # 20% to the new version; the rest in the old proportions (60:40 of 80).
    assert dict(endpoints.requests[1][1].traffic_split) == {"0": 20, "111": 48, "222": 32}
    assert record["traffic_split"] == {"4444": 20, "111": 48, "222": 32}


def test_several_registry_models_of_the_name_are_refused(tmp_path):
    models = RecordingModels(existing=[MODEL, f"{PARENT}/models/988"])
    with pytest.raises(CloudError, match="^2 Vertex AI models are named 'lmpipe'"):
        _deploy(tmp_path, models, RecordingEndpoints())
    assert [name for name, _ in models.requests] == ["list_models"]


def test_a_refused_upload_is_one_line_and_deploys_nothing(tmp_path):
    models = RecordingModels(fail=exceptions.PermissionDenied("aiplatform.models.upload denied\nmore"))
    endpoints = RecordingEndpoints()
    with pytest.raises(CloudError) as caught:
        _deploy(tmp_path, models, endpoints)
    assert str(caught.value) == ("uploading version 7 to the Vertex AI Model Registry failed: "
                                 "PermissionDenied: 403 aiplatform.models.upload denied")
    assert endpoints.requests == []


def test_clients_talk_to_the_regional_endpoint():
    section = load_config(os.path.join(REPO, "pipeline.yaml"), SETS).push.vertex
    built = vertex.clients(section, anonymous_credentials())
    assert built["models"].api_endpoint == "europe-west4-aiplatform.googleapis.com"
    assert built["endpoints"].api_endpoint == "europe-west4-aiplatform.googleapis.com"


def test_vertex_is_opt_in_and_needs_its_locations():
    assert load_config(os.path.join(REPO, "pipeline.yaml"), []).push.vertex.enabled is False
    with pytest.raises(ConfigError) as caught:
        load_config(os.path.join(REPO, "pipeline.yaml"), [*SETS, "push.vertex.artifact_root=null"])
    assert str(caught.value) == ("config key 'push.vertex.artifact_root': is required when "
                                 "push.vertex.enabled is true")
    with pytest.raises(ConfigError, match="push.vertex.max_replicas"):
        load_config(os.path.join(REPO, "pipeline.yaml"), [*SETS, "push.vertex.min_replicas=4"])


def test_the_serving_image_fetch_step_copies_the_model_in(tmp_path):
    source = tmp_path / "storage" / "7"
    source.mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    ran = subprocess.run([sys.executable, "-m", "components.push.vertex", "fetch",
                          str(tmp_path / "storage"), str(tmp_path / "models")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "models" / "7" / "saved_model.pb").read_bytes() == b"graph"
    bad = subprocess.run([sys.executable, "-m", "components.push.vertex", "fetch"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert (bad.returncode, bad.stderr.splitlines()) == (
        1, ["usage: python -m components.push.vertex fetch URI DIRECTORY"])


def _serving_command() -> list[str]:
    dockerfile = (REPO / "Dockerfile.serving").read_text()
    (cmd,) = re.findall(r"^CMD\s+(.+)$", dockerfile, flags=re.M)
    import json

    shell = json.loads(cmd)
    assert shell[:2] == ["sh", "-c"]
    return shlex.split(shell[2].split("exec ", 1)[1])


def test_serving_image_installs_the_pinned_stack_and_the_packages_it_runs():
    dockerfile = (REPO / "Dockerfile.serving").read_text()
    pins = dict(line.split("==") for line in (REPO / "requirements" / "constraints.txt")
                .read_text().splitlines() if "==" in line)
    assert f'"tensorflow=={pins["tensorflow"]}"' in dockerfile
    assert "-c requirements/constraints.txt ." in dockerfile
    copied = set(re.findall(r"^COPY\s+(\S+)\s", dockerfile, flags=re.M))
    assert {"pipeline", "components", "models"} <= copied
    assert "python -m components.push.vertex fetch \\\"$AIP_STORAGE_URI\\\" /models" in dockerfile
    assert re.search(r"^ENV[^#]*AIP_HTTP_PORT=8080", dockerfile, flags=re.M | re.S)


def test_serving_image_runs_a_real_lmpipe_serve_command():
    from pipeline.cli import build_parser

    command = _serving_command()
    assert command[:2] == ["lmpipe", "serve"]
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    if "serve" not in commands:
        pytest.skip("`lmpipe serve` is not in this tree yet")
    args = parser.parse_args([a.replace("$AIP_HTTP_PORT", "8080") for a in command[1:]])
    assert (args.model, args.host, int(args.port)) == ("/models", "0.0.0.0", 8080)


@pytest.mark.parametrize("fail", [None, "upload"])
def test_push_deploys_what_it_published_and_a_failed_deploy_is_no_push(tmp_path, monkeypatch,
                                                                       fail):
    from components import push
    from pipeline.core.config import PushConfig
    from pipeline.local_runner import Runtime
    from tests import lm_fixtures as lm
    from tests.components.test_push import _blessing, _digest

    model = tmp_path / "model"
    lm.write_bigram_model(model, seed=1, sequence_length=16)
    models = RecordingModels(fail=exceptions.PermissionDenied("no") if fail else None)
    endpoints = RecordingEndpoints()
    monkeypatch.setattr(vertex, "clients", lambda section: {"models": models,
                                                           "endpoints": endpoints})
    section = _config(tmp_path)
    out = tmp_path / "pushed"
    out.mkdir()
    inputs = {"model": lm.artifact("Model", model, "fp-model"),
              "blessing": lm.artifact("ModelBlessing", _blessing(tmp_path, model, True, "r"),
                                      "fp-blessing")}
    config = PushConfig(serving_dir=str(tmp_path / "serving"), infra_validation=False,
                        vertex=section)
    runtime = Runtime(run_id="run-1", root=str(tmp_path))
    if fail:
        with pytest.raises(CloudError, match="uploading version 1 to the Vertex AI Model"):
            push.run(inputs, {"pushed": str(out)}, runtime, push=config)
        # The version is in the local serving directory, but no record says it was pushed.
        assert not (out / "push.json").exists()
        assert [name for name, _ in endpoints.requests] == []
        return
    push.run(inputs, {"pushed": str(out)}, runtime, push=config)
    record = json.loads((out / "push.json").read_text())
    assert record["pushed"] is True and record["version"] == 1
    assert record["vertex"]["deployed"] is True
    assert record["vertex"]["artifact_uri"] == str(tmp_path / "bucket" / f"1-{_digest(model)[:12]}")
    (_, upload) = models.requests[-1]
    assert dict(upload.model.labels) == {"lmpipe-version": "1",
                                         "lmpipe-saved-model": _digest(model)[:12]}
