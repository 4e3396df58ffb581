"""The Vertex AI requests: a `PipelineJob` for one run, a `PipelineJobSchedule` for retraining.

Building an object sends nothing; `send` (`pipeline/core/gcloud.py`) does, and turns every
cloud-side failure (no credentials, permission denied, unreachable API) into one
`CloudError` line.
"""

from __future__ import annotations

import hashlib
import json
import re

from pipeline.core.configio import to_dict
from pipeline.core.errors import ConfigError
from pipeline.core.gcloud import anonymous_credentials, default_credentials, send

def require_submit_fields(config) -> None:
    """`vertex.project` and `vertex.pipeline_root` must be set to create anything on Vertex."""
    for name in ("project", "pipeline_root"):
        if getattr(config.vertex, name) is None:
            raise ConfigError(f"vertex.{name}", "is required to submit or schedule on Vertex AI")


def job_labels(config) -> dict[str, str]:
    """`vertex.labels` plus `lmpipe-config`, a hash of the resolved config, to trace a run back."""
    digest = hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()
    return {**config.vertex.label_dict(), "lmpipe-config": digest[:16]}


def pipeline_job(config, template_path: str, credentials):
    """The `aiplatform.PipelineJob` for one run of the compiled pipeline (nothing is sent).

    Args:
        config: the resolved `LmpipeConfig`.
        template_path: the compiled pipeline spec (YAML).
        credentials: Google credentials (anonymous ones for a dry run).

    Returns:
        The job; its `_gca_resource` is the `PipelineJob` message that `submit` sends.
    """
    from google.cloud import aiplatform

    require_submit_fields(config)
    vertex = config.vertex
    job = aiplatform.PipelineJob(
        display_name=config.pipeline.name, template_path=template_path,
        pipeline_root=vertex.pipeline_root, parameter_values={},
        enable_caching=vertex.enable_caching, labels=job_labels(config),
        project=vertex.project, location=vertex.location, credentials=credentials)
    if vertex.service_account:
        # `submit` would set it too; setting it here makes the built message the request.
        job._gca_resource.service_account = vertex.service_account
    return job


def schedule_display_name(config) -> str:
    """The schedule's name: the pipeline's, plus `-schedule`."""
    return f"{config.pipeline.name}-schedule"


def schedule_arguments(config) -> dict:
    """The keyword arguments of `PipelineJobSchedule.create` from `schedule:`.

    Returns:
        cron (with its `TZ=` prefix), start and end times, run limits, service account.
    """
    schedule = config.schedule
    if schedule.cron is None:
        raise ConfigError("schedule.cron", "is required to schedule on Vertex AI (e.g. '0 3 * * *')")
    return {
        # One space between fields: the check split on any whitespace (a YAML block
        # scalar's newline, a tab), which the service need not.
        "cron": f"TZ={schedule.time_zone} {' '.join(schedule.cron.split())}",
        "start_time": schedule.start_time,
        "end_time": schedule.end_time,
        "allow_queueing": schedule.allow_queueing,
        "max_run_count": schedule.max_run_count,
        "max_concurrent_run_count": schedule.max_concurrent_runs,
        "service_account": config.vertex.service_account,
    }


def pipeline_schedule(config, job):
    """The `aiplatform.PipelineJobSchedule` that starts `job` on `schedule.cron` (nothing is sent)."""
    from google.cloud import aiplatform

    return aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=schedule_display_name(config),
        credentials=job.credentials, project=job.project, location=job.location)


def schedule_request(pipeline_schedule, arguments: dict):
    """The `Schedule` message that `pipeline_schedule.create(**arguments)` sends.

    aiplatform fills these fields inside `create`, just before sending; this mirrors it for
    a dry run (a test checks the two agree).

    Args:
        pipeline_schedule: from `pipeline_schedule`.
        arguments: from `schedule_arguments`.

    Returns:
        A copy of the schedule's message with the schedule fields set.
    """
    message = type(pipeline_schedule._gca_resource)(pipeline_schedule._gca_resource)
    for name in ("cron", "start_time", "end_time", "allow_queueing", "max_run_count"):
        if arguments[name]:
            setattr(message, name, arguments[name])
    message.max_concurrent_run_count = arguments["max_concurrent_run_count"]
    if arguments["service_account"]:
        message.create_pipeline_job_request.pipeline_job.service_account = arguments["service_account"]
    return message


def submit(config, spec: str, *, dry_run: bool) -> dict:
    """Create the `PipelineJob` of the compiled `spec` (or, for a dry run, show its request).

    Returns:
        For a dry run the request (parent, job id, the `PipelineJob` without its spec),
        else the created job's resource name and console link.
    """
    job = pipeline_job(config, spec, anonymous_credentials() if dry_run else default_credentials())
    if dry_run:
        return {"parent": job._parent, "pipelineJobId": job.job_id,
                "pipelineJob": request_json(job._gca_resource)}
    send(job.submit, "submitting the pipeline job")
    return {"job": job.resource_name, "console": job._dashboard_uri()}


def schedule(config, spec: str, *, dry_run: bool) -> dict:
    """Create the `PipelineJobSchedule` of the compiled `spec` (or show its request).

    Returns:
        For a dry run the request (parent, the `Schedule` without the spec), else the
        created schedule's resource name.
    """
    arguments = schedule_arguments(config)
    credentials = anonymous_credentials() if dry_run else default_credentials()
    created = pipeline_schedule(config, pipeline_job(config, spec, credentials))
    if dry_run:
        return {"parent": created._parent,
                "schedule": request_json(schedule_request(created, arguments))}
    send(lambda: created.create(**arguments), "creating the schedule")
    return {"schedule": created.resource_name}


def request_json(message) -> dict:
    """A job or schedule message as JSON data, without the compiled spec (`lmpipe compile` shows it)."""
    return _without_spec(json.loads(type(message).to_json(message)))


def _without_spec(data):
    if isinstance(data, dict):
        return {k: _without_spec(v) for k, v in data.items() if k != "pipelineSpec"}
    return data


def vertex_name(name: str) -> str:
    """`name` as Vertex wants a pipeline name: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "lmpipe"
