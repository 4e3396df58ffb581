"""Where the pipeline runs in the cloud: `vertex` (with Dataflow and training machines) and `schedule`."""

from __future__ import annotations

import functools
import re
from dataclasses import field
from typing import Literal

from pipeline.core.config.checks import config_dataclass, require, require_positive
from pipeline.core.config.cron import cron_problem


# Vertex AI names: a region, a label key or value (lowercase, digits, '_' and '-').
_VERTEX_LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_LABEL_PART = re.compile(r"^[a-z0-9_-]{0,63}$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
# A project ID (6-30 lowercase letters, digits, hyphens; a letter first, no hyphen last),
# optionally domain-scoped (example.com:my-project), or a project number.
_PROJECT = re.compile(r"^(?:(?:[a-z0-9-]+\.)+[a-z]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$")
# A Cloud Storage bucket name: lowercase letters, digits, -, _ and ., a letter or digit at
# both ends, 3-63 characters (up to 222 in dot-separated parts of at most 63).
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
# A container image reference (the distribution/reference grammar): an optional registry
# host, lowercase path components, an optional tag and an optional sha256 digest.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
# google-cloud-aiplatform's SUPPORTED_REGIONS (constants/base.py) without `global` and the
# multi-region `us`: a pipeline and its Dataflow jobs need one region. Copied because
# importing aiplatform takes seconds; a test keeps the two equal.
VERTEX_REGIONS = frozenset({
    "africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2",
    "asia-northeast3", "asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2",
    "australia-southeast1", "australia-southeast2", "europe-central2", "europe-north1",
    "europe-north2", "europe-southwest1", "europe-west1", "europe-west2", "europe-west3",
    "europe-west4", "europe-west6", "europe-west8", "europe-west9", "europe-west12",
    "me-central1", "me-central2", "me-west1", "northamerica-northeast1",
    "northamerica-northeast2", "southamerica-east1", "southamerica-west1", "us-central1",
    "us-east1", "us-east4", "us-east5", "us-east7", "us-south1", "us-west1", "us-west2",
    "us-west3", "us-west4", "us-west8",
})
# The Beam components, the only steps that can run on Dataflow.
BEAM_STEPS = ("ingest", "labels", "transform", "evaluate")
# kfp's checks of a step's limits (PipelineTask._validate_cpu_request_limit and
# _validate_memory_request_limit).
_KFP_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?$")
_KFP_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki){0,1}$")


def _require_gcs(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value is None or (value.startswith("gs://") and len(value) > 5), name,
                f"must be a gs:// location, got {value!r}")
        require(value is None or is_bucket(value[len("gs://"):].split("/", 1)[0]), name,
                f"must be gs://BUCKET/... with a Cloud Storage bucket name (lowercase letters, "
                f"digits, -, _ and .), got {value!r}")


def is_bucket(name: str) -> bool:
    """Whether `name` is a valid Cloud Storage bucket name.

    Args:
        name: the bucket part of a gs:// or /gcs/ location.

    Returns:
        True if Cloud Storage accepts it as a bucket name.
    """
    parts_fit = all(1 <= len(part) <= 63 for part in name.split("."))
    return bool(_BUCKET.match(name)) and 3 <= len(name) <= 222 and parts_fit and (
        "." in name or len(name) <= 63)


def _require_project(section: object) -> None:
    require(section.project is None or bool(_PROJECT.match(section.project)), "project",
            f"must be a Google Cloud project ID (6-30 lowercase letters, digits and hyphens, "
            f"starting with a letter) or project number, got {section.project!r}")


def _require_image(section: object, name: str) -> None:
    value = getattr(section, name)
    require(value is None or (len(value) <= 255 and bool(_IMAGE.match(value))), name,
            f"must be a container image such as REGION-docker.pkg.dev/PROJECT/REPO/lmpipe:TAG "
            f"(lowercase repository path, optional :tag and @sha256:<64 hex digits>), got {value!r}")


def _require_no_space(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value is None or (value != "" and not any(c.isspace() for c in value)), name,
                f"must be a non-empty name without spaces, got {value!r}")


@config_dataclass
class DataflowConfig:
    """How the Beam steps run on Vertex (`vertex.dataflow`); unset locations derive from `vertex`.

    Attributes:
        runner: `DataflowRunner` sends the Beam steps to Dataflow; `DirectRunner` keeps
            them inside their Vertex step, with `pipeline.beam_args` alone.
        steps: the Beam components that go to Dataflow: ingest, transform, evaluate
            (and labels, in a classification task's DAG).
        project, region: Dataflow's project and region (None: `vertex.project` and
            `vertex.location`).
        temp_location, staging_location: gs:// locations for Dataflow's temporary files
            and staged packages (None: under `vertex.pipeline_root`/dataflow/).
        setup_file: ship the project to the workers as a package (`./setup.py`) instead of
            running them in an image.
        sdk_container_image: the workers' image (None with no setup_file: `vertex.image`,
            which is built on the Beam SDK image).
        machine_type, max_num_workers: the workers' machine type and autoscaling bound.
        service_account_email: the workers' service account (None: `vertex.service_account`).
        extra_args: further Beam options, passed verbatim (each starting with --).
    """

    runner: Literal["DataflowRunner", "DirectRunner"] = "DataflowRunner"
    steps: tuple[str, ...] = ("ingest", "transform", "evaluate")
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    staging_location: str | None = None
    setup_file: str | None = None
    sdk_container_image: str | None = None
    machine_type: str = "n1-standard-4"
    max_num_workers: int = 10
    service_account_email: str | None = None
    extra_args: tuple[str, ...] = ()

    def __post_init__(self):
        for i, step in enumerate(self.steps):
            require(step in BEAM_STEPS, f"steps[{i}]",
                    f"expected one of the Beam steps {', '.join(BEAM_STEPS)}, got {step!r}")
        _require_gcs(self, "temp_location", "staging_location")
        _require_no_space(self, "project", "setup_file", "sdk_container_image", "machine_type",
                          "service_account_email")
        _require_project(self)
        _require_image(self, "sdk_container_image")
        require(self.region is None or bool(_VERTEX_LOCATION.match(self.region)), "region",
                f"must be a region such as us-central1, got {self.region!r}")
        require(not (self.setup_file and self.sdk_container_image), "setup_file",
                "set either setup_file or sdk_container_image, not both")
        require_positive(self, "max_num_workers")
        require(all(a.startswith("--") for a in self.extra_args), "extra_args",
                f"must be Beam options starting with --, got {list(self.extra_args)}")


@config_dataclass
class VertexMachineConfig:
    """The Vertex training cluster of one step (`vertex.train`, `vertex.tune`).

    One replica is the chief; `replica_count - 1` more are workers with the same machine.

    Attributes:
        machine_type: the Compute Engine machine of each replica (a TPU VM type such as
            cloud-tpu for TPUs).
        accelerator_type, accelerator_count: the accelerators of each replica, such as
            NVIDIA_L4 or TPU_V3 (None: CPU only).
        replica_count: the chief plus workers; more than one needs train.strategy
            multi_worker, whose workers read TF_CONFIG as Vertex sets it.
        tpu_topology: the TPU slice topology, such as 2x2 (TPU machines only).
        boot_disk_size_gb: each replica's boot disk.
    """

    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None
    accelerator_count: int = 1
    replica_count: int = 1
    tpu_topology: str | None = None
    boot_disk_size_gb: int = 100

    def __post_init__(self):
        _require_no_space(self, "machine_type", "tpu_topology")
        require(self.accelerator_type is None or bool(_ACCELERATOR.match(self.accelerator_type)),
                "accelerator_type",
                f"must be a Vertex accelerator such as NVIDIA_L4 or TPU_V3, got {self.accelerator_type!r}")
        require_positive(self, "accelerator_count", "replica_count")
        require(self.boot_disk_size_gb >= 10, "boot_disk_size_gb",
                f"must be >= 10, got {self.boot_disk_size_gb}")


@config_dataclass
class VertexConfig:
    """Where and how `lmpipe compile/submit/schedule --target vertex` run the pipeline.

    Attributes:
        project, location: the Google Cloud project and region of the pipeline job.
        image: the project's container image (built from the Dockerfile) that runs every
            step; required to compile for Vertex.
        pipeline_root: the gs:// root of the pipeline's artifacts on Vertex.
        service_account: the service account the job, its training jobs and Dataflow
            workers run as (None: the project's default).
        labels: key=value labels on the job (lowercase letters, digits, _ and -).
        enable_caching: whether Vertex may reuse a step's earlier outputs; a step whose
            config reads outside the DAG (such as `latest_pushed`) is never cached.
        cpu_limit, memory_limit: resource limits of the steps that run in a plain
            container (such as "4" and "16G"); tune and train use their machines instead.
            CPU: a number, or an integer followed by m (millicores); memory: an integer,
            optionally followed by K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei.
        dataflow: how the Beam steps run (see the `vertex.dataflow.*` keys).
        train, tune: the Vertex training clusters of those two steps.
    """

    project: str | None = None
    location: str = "us-central1"
    image: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    labels: tuple[str, ...] = ()
    enable_caching: bool = True
    cpu_limit: str | None = None
    memory_limit: str | None = None
    dataflow: DataflowConfig = field(default_factory=DataflowConfig)
    train: VertexMachineConfig = field(default_factory=VertexMachineConfig)
    tune: VertexMachineConfig = field(default_factory=VertexMachineConfig)

    def __post_init__(self):
        require(bool(_VERTEX_LOCATION.match(self.location)), "location",
                f"must be a region such as us-central1, got {self.location!r}")
        require(self.location in VERTEX_REGIONS, "location",
                f"must be a region where Vertex AI runs (such as us-central1 or europe-west4), "
                f"got {self.location!r}")
        _require_gcs(self, "pipeline_root")
        _require_no_space(self, "project", "image", "cpu_limit", "memory_limit")
        _require_project(self)
        _require_image(self, "image")
        require(self.cpu_limit is None or bool(_KFP_CPU.match(self.cpu_limit)), "cpu_limit",
                f"must be a number of CPUs such as 4 or 0.5, or millicores such as 500m, "
                f"got {self.cpu_limit!r}")
        require(self.memory_limit is None or bool(_KFP_MEMORY.match(self.memory_limit)),
                "memory_limit", f"must be an integer with an optional unit K, M, G, T, P, E "
                f"or Ki, Mi, Gi, Ti, Pi, Ei, such as 16G, got {self.memory_limit!r}")
        require(self.service_account is None or self.service_account.count("@") == 1,
                "service_account", f"must be a service account email, got {self.service_account!r}")
        for label in self.labels:
            key, sep, value = label.partition("=")
            require(bool(sep and key and key[0].islower() and _LABEL_PART.match(key)
                         and _LABEL_PART.match(value)), "labels",
                    f"must be key=value with lowercase letters, digits, _ or -, got {label!r}")

    def label_dict(self) -> dict[str, str]:
        """The labels as Vertex wants them."""
        return dict(label.split("=", 1) for label in self.labels)


@config_dataclass
class ScheduleConfig:
    """When Vertex AI starts the pipeline (`lmpipe schedule --target vertex`).

    Attributes:
        cron: when to start a run, as five unix-cron fields such as "0 3 * * 1-5":
            minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of
            week 0-6 or SUN-SAT (7 is Sunday too); each `*`, values and ranges a-b
            separated by commas, `*` or a range with a step /n. No TZ= prefix: the
            zone is `time_zone`.
        time_zone: the IANA time zone the cron expression is read in.
        start_time, end_time: RFC 3339 times bounding the schedule (None: now, never).
        max_concurrent_runs: runs of this schedule that may overlap.
        max_run_count: stop after this many runs (None: no limit).
        allow_queueing: queue a run when max_concurrent_runs are active instead of
            skipping it.
    """

    cron: str | None = None
    time_zone: str = "UTC"
    start_time: str | None = None
    end_time: str | None = None
    max_concurrent_runs: int = 1
    max_run_count: int | None = None
    allow_queueing: bool = False

    def __post_init__(self):
        problem = None if self.cron is None else cron_problem(self.cron)
        require(problem is None, "cron", f"must be a cron expression of five fields such as "
                f"'0 3 * * *' ({problem}), got {self.cron!r}")
        require(_is_time_zone(self.time_zone), "time_zone",
                f"must be an IANA time zone such as Europe/Berlin, got {self.time_zone!r}")
        start, end = _timestamp(self, "start_time"), _timestamp(self, "end_time")
        require(start is None or end is None or end > start, "end_time",
                f"must be after schedule.start_time ({self.start_time}), got {self.end_time}")
        require_positive(self, "max_concurrent_runs", "max_run_count")


def _is_time_zone(name: str) -> bool:
    # ZoneInfo(name) also opens any file under the system's zoneinfo directory
    # (`localtime`, `posix/Europe/Berlin`, `right/UTC`), names Vertex AI does not know.
    return name in _iana_time_zones()


@functools.lru_cache(maxsize=1)
def _iana_time_zones() -> frozenset[str]:
    import zoneinfo

    # `localtime` is the distribution's link to the machine's zone, not an IANA name.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def _timestamp(section: object, name: str):
    from datetime import datetime

    value = getattr(section, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    require(parsed is not None and parsed.tzinfo is not None, name,
            f"must be an RFC 3339 time with a zone such as 2027-01-01T03:00:00Z, got {value!r}")
    return parsed
