"""Checks that only matter when the pipeline is compiled for Vertex AI."""

from __future__ import annotations

from pipeline.core.config.cloud import BEAM_STEPS, is_bucket
from pipeline.core.errors import ConfigError

# The steps that run as Vertex training jobs, and the `vertex` section of their machines.
TRAINING_STEPS = {"tune": "tune", "train": "train"}
# The longest pipeline job ID Vertex AI takes.
JOB_ID_LENGTH = 128
# Where Vertex AI mounts Cloud Storage in its steps and training replicas.
GCS_MOUNT = "/gcs/"
# Directories the components open as local files, which must outlive a step's container.
MOUNTED_DIRECTORIES = (("pipeline", "root"), ("push", "serving_dir"))


def check_vertex(config, nodes: list) -> None:
    """Raise a `ConfigError` for a Vertex setting that cannot work with this config and DAG.

    Args:
        config: the resolved `LmpipeConfig`.
        nodes: the DAG.
    """
    vertex = config.vertex
    if vertex.image is None:
        raise ConfigError("vertex.image", "is required for --target vertex (the image built "
                          "from the Dockerfile, e.g. REGION-docker.pkg.dev/PROJECT/REPO/lmpipe:TAG)")
    _check_name(config.pipeline.name)
    _check_mounted(config)
    _check_inputs(config)
    # The Beam steps of this DAG (the config already refused non-Beam ones).
    names = [node.name for node in nodes if node.name in BEAM_STEPS]
    for i, step in enumerate(vertex.dataflow.steps):
        if step not in names:
            raise ConfigError(f"vertex.dataflow.steps[{i}]",
                              f"expected one of this DAG's Beam steps {', '.join(names)}, "
                              f"got {step!r}")
    _check_machine(config, "train", config.train.strategy)
    _check_machine(config, "tune", None)


def _check_name(name: str) -> None:
    """Vertex names a run `<vertex_name(name)>-<14-digit timestamp>` and wants a job ID of at
    most 128 characters starting with a letter (aiplatform's `_VALID_NAME_PATTERN`), which
    also keeps the display names `name` and `name-schedule` within their 128 (kfp's own
    pipeline-name rule, 128 characters starting with a letter or digit, is looser)."""
    from pipeline.vertex.jobs import vertex_name

    pipeline_name = vertex_name(name)
    if not pipeline_name[0].isalpha():
        raise ConfigError("pipeline.name", f"must start with a letter for Vertex AI "
                          f"(its pipeline name is {pipeline_name!r}), got {name!r}")
    if max(len(name), len(pipeline_name)) > JOB_ID_LENGTH - 15:
        raise ConfigError("pipeline.name", f"must be at most {JOB_ID_LENGTH - 15} characters for "
                          f"Vertex AI (run IDs add a 15-character timestamp), got {len(name)} chars")


def _check_mounted(config) -> None:
    """The components open `pipeline.root` and `push.serving_dir` as local directories: on
    Vertex anything outside the Cloud Storage mount (a relative path, a gs:// URI that
    `os.path` reads as a relative path) is written inside a step's container and lost."""
    for section, name in MOUNTED_DIRECTORIES:
        value = getattr(getattr(config, section), name)
        bucket = value[len(GCS_MOUNT):].split("/", 1)[0] if value.startswith(GCS_MOUNT) else ""
        if is_bucket(bucket):
            continue
        hint = (f" (write {GCS_MOUNT}{value[len('gs://'):]} for {value})"
                if value.startswith("gs://") else "")
        raise ConfigError(f"{section}.{name}", f"must be under {GCS_MOUNT}BUCKET/ on Vertex AI, "
                          f"where its steps mount Cloud Storage{hint}; anywhere else is inside "
                          f"a step's container and lost when it ends, got {value!r}")


def _check_inputs(config) -> None:
    """`data.inputs` as ingest will read them on Vertex: a Dataflow worker mounts no Cloud
    Storage, and a step's working directory is the image's, not the user's checkout."""
    on_dataflow = (config.vertex.dataflow.runner == "DataflowRunner"
                   and "ingest" in config.vertex.dataflow.steps)
    for i, pattern in enumerate(config.data.inputs):
        if pattern.startswith("gs://"):
            continue
        if on_dataflow:
            raise ConfigError(f"data.inputs[{i}]", "must be a gs:// URI when ingest runs on "
                              "Dataflow (vertex.dataflow.steps), whose workers mount no Cloud "
                              f"Storage, got {pattern!r}")
        if not pattern.startswith("/"):
            raise ConfigError(f"data.inputs[{i}]", "must be a gs:// URI, a /gcs/ path or an "
                              "absolute path in the image on Vertex AI (a relative path is read "
                              f"from the step's working directory), got {pattern!r}")


def _check_machine(config, section: str, strategy: str | None) -> None:
    from google.cloud.aiplatform_v1.types import AcceleratorType

    machine = getattr(config.vertex, section)
    key = f"vertex.{section}"
    known = [name for name in AcceleratorType.__members__ if name != "ACCELERATOR_TYPE_UNSPECIFIED"]
    if machine.accelerator_type is not None and machine.accelerator_type not in known:
        raise ConfigError(f"{key}.accelerator_type",
                          f"expected one of {', '.join(known)}, got {machine.accelerator_type!r}")
    if machine.tpu_topology is not None and not _is_tpu(machine):
        # Vertex refuses the CustomJob only when the step starts, after the data steps.
        raise ConfigError(f"{key}.tpu_topology", f"needs a TPU machine (a TPU_* accelerator_type "
                          f"or a TPU VM machine_type such as ct5lp-hightpu-4t), got "
                          f"{machine.tpu_topology!r} on {machine.machine_type} with "
                          f"{machine.accelerator_type or 'no accelerator'}")
    if strategy is None:
        return
    if machine.replica_count > 1 and strategy != "multi_worker":
        raise ConfigError(f"{key}.replica_count", f"more than one replica needs train.strategy: "
                          f"multi_worker, got {machine.replica_count} replicas with {strategy!r}")
    if _is_tpu(machine) and strategy not in ("tpu", "auto"):
        raise ConfigError("train.strategy", f"must be tpu or auto on a TPU machine "
                          f"({machine.machine_type}), got {strategy!r}")


def _is_tpu(machine) -> bool:
    return ((machine.accelerator_type or "").startswith("TPU")
            or machine.machine_type.startswith(("cloud-tpu", "ct")))
