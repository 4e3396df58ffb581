"""push.vertex: a pushed version -> the Vertex AI Model Registry and an endpoint.

`deploy` copies the version to Cloud Storage (`<artifact_root>/<N>-<digest>/<N>/`, a serving
directory of that one version), uploads it to the Model Registry with the serving image of
`Dockerfile.serving` (a new version of the registry model `model_name` when one exists),
finds or creates the endpoint and deploys the new version there with its share of the
traffic. The requests are the Vertex AI API's own messages (what `aiplatform.Model.upload`
and `Model.deploy` send), built here and sent through the API's clients, so the tests
check the very requests; every cloud-side failure is one `CloudError` line.

The serving container: Vertex copies `artifact_uri` and names the copy in AIP_STORAGE_URI;
the image's command copies it in (`python -m components.push.vertex fetch`) and runs
`lmpipe serve --model` on it, on AIP_HTTP_PORT with the routes below.
"""

from __future__ import annotations

import os
import sys

from pipeline.core.gcloud import CloudError, default_credentials, send

# What the container spec tells Vertex, and Vertex tells the server (AIP_HTTP_PORT,
# AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE).
PORT = 8080
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
# The key of the model being deployed in a DeployModelRequest's traffic split.
NEW_MODEL = "0"


def artifact_uri(version_dir: str, card: dict, vertex) -> str:
    """Where on Cloud Storage a version is copied: one directory per version and digest.

    Args:
        version_dir: the pushed version (`<serving_dir>/<N>`).
        card: its model card (`version`, `model.saved_model_sha256`).
        vertex: the `PushVertexConfig`.

    Returns:
        `<artifact_root>/<N>-<digest, 12 digits>`, a serving directory holding `<N>/`.
    """
    digest = card["model"]["saved_model_sha256"][:12]
    return f"{vertex.artifact_root.rstrip('/')}/{card['version']}-{digest}"


def copy_tree(source: str, target: str) -> list[str]:
    """Copy every file below `source` to the same place below `target` (local or gs://).

    Returns:
        The paths written.
    """
    from pipeline.core import files

    written = []
    base = source.rstrip("/") + "/"
    for meta in files.files_under(source):
        path = f"{target.rstrip('/')}/{meta.path[len(base):]}"
        files.write_bytes(path, files.read_bytes(meta.path))
        written.append(path)
    return written


def location_path(vertex) -> str:
    return f"projects/{vertex.project}/locations/{vertex.location}"


def upload_request(vertex, card: dict, uri: str, parent_model: str | None):
    """The `UploadModelRequest` of a pushed version (nothing is sent).

    Args:
        vertex: the `PushVertexConfig`.
        card: the version's model card.
        uri: its Cloud Storage copy (`artifact_uri`).
        parent_model: the registry model it becomes a version of, or None (a new model).

    Returns:
        The request.
    """
    from google.cloud import aiplatform_v1 as api

    container = api.ModelContainerSpec(
        image_uri=vertex.image, ports=[api.Port(container_port=PORT)],
        predict_route=PREDICT_ROUTE, health_route=HEALTH_ROUTE)
    model = api.Model(
        display_name=vertex.model_name, artifact_uri=uri, container_spec=container,
        version_description=f"lmpipe version {card['version']} pushed by run {card['run_id']}",
        labels={"lmpipe-version": str(card["version"]),
                "lmpipe-saved-model": card["model"]["saved_model_sha256"][:12]})
    return api.UploadModelRequest(parent=location_path(vertex), model=model,
                                  parent_model=parent_model or "")


def deploy_request(vertex, endpoint, model: str, version_id: str, card: dict):
    """The `DeployModelRequest` giving the new version `traffic_percentage` of `endpoint`.

    Args:
        vertex: the `PushVertexConfig`.
        endpoint: the endpoint (`aiplatform_v1.Endpoint`) as it is now.
        model: the registry model's resource name.
        version_id: the uploaded version's ID in the registry.
        card: the version's model card.

    Returns:
        The request; the models deployed already share the rest of the traffic in their
        current proportions (as `aiplatform.Endpoint.deploy` splits it).
    """
    from google.cloud import aiplatform_v1 as api
    from google.cloud.aiplatform import Endpoint

    resources = api.DedicatedResources(
        machine_spec=api.MachineSpec(machine_type=vertex.machine_type),
        min_replica_count=vertex.min_replicas, max_replica_count=vertex.max_replicas)
    deployed = api.DeployedModel(
        model=f"{model}@{version_id}", display_name=f"{vertex.model_name}-v{card['version']}",
        dedicated_resources=resources, service_account=vertex.service_account or "")
    split = (Endpoint._allocate_traffic(dict(endpoint.traffic_split), vertex.traffic_percentage)
             if endpoint.traffic_split else {NEW_MODEL: 100})
    return api.DeployModelRequest(endpoint=endpoint.name, deployed_model=deployed,
                                  traffic_split=split)


def clients(vertex, credentials=None) -> dict:
    """The Model and Endpoint service clients of `vertex.location` (Application Default
    Credentials unless `credentials` are given)."""
    from google.cloud import aiplatform_v1 as api

    options = {"api_endpoint": f"{vertex.location}-aiplatform.googleapis.com"}
    credentials = credentials or default_credentials()
    return {"models": api.ModelServiceClient(credentials=credentials, client_options=options),
            "endpoints": api.EndpointServiceClient(credentials=credentials,
                                                   client_options=options)}


def _only(found: list, what: str, key: str):
    if len(found) > 1:
        raise CloudError(f"{len(found)} {what} are named {key!r}: give push.vertex a unique "
                         "name (or the endpoint's ID)")
    return found[0] if found else None


def registry_model(vertex, service) -> str | None:
    """The resource name of the registry model named `model_name`, or None."""
    found = send(lambda: list(service.list_models(request={
        "parent": location_path(vertex), "filter": f'display_name="{vertex.model_name}"'})),
        "looking up the Vertex AI model")
    model = _only(found, "Vertex AI models", vertex.model_name)
    return model.name if model else None


def endpoint_of(vertex, service, log):
    """The endpoint `vertex.endpoint` names (by ID, or display name: created if missing)."""
    from google.cloud import aiplatform_v1 as api
    from pipeline.core.config.release import ENDPOINT_ID

    if ENDPOINT_ID.match(vertex.endpoint):
        name = f"{location_path(vertex)}/endpoints/{vertex.endpoint}"
        return send(lambda: service.get_endpoint(name=name), f"reading endpoint {name}")
    found = send(lambda: list(service.list_endpoints(request={
        "parent": location_path(vertex), "filter": f'display_name="{vertex.endpoint}"'})),
        "looking up the Vertex AI endpoint")
    endpoint = _only(found, "Vertex AI endpoints", vertex.endpoint)
    if endpoint is not None:
        return endpoint
    log(f"[push] creating the Vertex AI endpoint {vertex.endpoint}")
    request = api.CreateEndpointRequest(parent=location_path(vertex),
                                        endpoint=api.Endpoint(display_name=vertex.endpoint))
    return send(lambda: service.create_endpoint(request=request).result(),
                f"creating the endpoint {vertex.endpoint}")


def deploy(version_dir: str, card: dict, vertex, log, services: dict | None = None) -> dict:
    """Copy a pushed version to Cloud Storage, upload it to the Model Registry and deploy it.

    Args:
        version_dir: the pushed version (`<serving_dir>/<N>`).
        card: its model card.
        vertex: the `PushVertexConfig` (enabled).
        log: a function taking one line.
        services: `clients(vertex)` (the default), or clients that stand in for them.

    Returns:
        What push records under `vertex` in push.json: `deployed` (True), `artifact_uri`,
        `model`, `model_version_id`, `endpoint`, `deployed_model_id`, `traffic_split`.

    Raises:
        CloudError: a copy or a request failed (one line naming it; what was done before
            it is in the log).
    """
    services = services or clients(vertex)
    uri = artifact_uri(version_dir, card, vertex)
    number = str(card["version"])
    send(lambda: copy_tree(version_dir, f"{uri}/{number}"), f"copying version {number} to {uri}")
    log(f"[push] copied version {number} to {uri}")
    request = upload_request(vertex, card, uri, registry_model(vertex, services["models"]))
    uploaded = send(lambda: services["models"].upload_model(request=request).result(),
                    f"uploading version {number} to the Vertex AI Model Registry")
    log(f"[push] uploaded as {uploaded.model} version {uploaded.model_version_id}")
    endpoint = endpoint_of(vertex, services["endpoints"], log)
    deploy_req = deploy_request(vertex, endpoint, uploaded.model, uploaded.model_version_id, card)
    done = send(lambda: services["endpoints"].deploy_model(request=deploy_req).result(),
                f"deploying {uploaded.model}@{uploaded.model_version_id} to {endpoint.name}")
    split = {(done.deployed_model.id if k == NEW_MODEL else k): v
             for k, v in deploy_req.traffic_split.items()}
    log(f"[push] deployed to {endpoint.name} as {done.deployed_model.id} "
        f"({split[done.deployed_model.id]}% of the traffic)")
    return {"deployed": True, "artifact_uri": uri, "model": uploaded.model,
            "model_version_id": uploaded.model_version_id, "endpoint": endpoint.name,
            "deployed_model_id": done.deployed_model.id, "traffic_split": split}


def fetch(uri: str, target: str) -> None:
    """The serving container's first step: copy the model Vertex names (AIP_STORAGE_URI) to
    a local directory `lmpipe serve --model` reads.

    Args:
        uri: the gs:// copy of `artifact_uri`.
        target: the local directory.
    """
    send(lambda: copy_tree(uri, target), f"copying the model from {uri}")


if __name__ == "__main__":
    # Dockerfile.serving: `python -m components.push.vertex fetch "$AIP_STORAGE_URI" /models`.
    if len(sys.argv) != 4 or sys.argv[1] != "fetch":
        sys.exit("usage: python -m components.push.vertex fetch URI DIRECTORY")
    try:
        fetch(sys.argv[2], os.path.abspath(sys.argv[3]))
    except CloudError as err:
        sys.exit(f"lmpipe: error: {err}")
