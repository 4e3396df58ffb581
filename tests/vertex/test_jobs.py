"""`lmpipe submit` and `lmpipe schedule`: the Vertex AI requests, up to the wire.

aiplatform builds and sends the requests; the only stand-in is the Google API client it
sends them with (`RecordingClient`), so what is checked is the exact message it would send.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from google.cloud.aiplatform import pipeline_jobs

from pipeline import cli
from pipeline.vertex import jobs
from pipeline.vertex_runner import compile_pipeline
from tests.conftest import run_lmpipe
from tests.vertex.conftest import VERTEX_SETS, default_config

SCHEDULE_SETS = ["schedule.cron=0 3 * * 1", "schedule.time_zone=Europe/Berlin",
                 "schedule.start_time='2027-01-04T00:00:00+01:00'",
                 "schedule.end_time='2027-12-31T00:00:00Z'", "schedule.max_concurrent_runs=2",
                 "schedule.max_run_count=50"]


class RecordingClient:
    """Stands in for aiplatform's PipelineService/ScheduleService client: keeps each request."""

    def __init__(self):
        self.requests = []

    def create_pipeline_job(self, parent, pipeline_job, pipeline_job_id, timeout=None):
        self.requests.append({"parent": parent, "pipeline_job": pipeline_job,
                              "pipeline_job_id": pipeline_job_id})
        created = type(pipeline_job)(pipeline_job)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return created

    def create_schedule(self, parent, schedule, timeout=None):
        self.requests.append({"parent": parent, "schedule": schedule})
        created = type(schedule)(schedule)
        created.name = f"{parent}/schedules/1234"
        return created


def _job(config, tmp_path):
    spec = compile_pipeline(config, str(tmp_path / "spec.yaml"))
    return jobs.pipeline_job(config, spec, jobs.anonymous_credentials()), spec


def test_pipeline_job_request(tmp_path):
    config = default_config("vertex.labels=[team=ml]", "vertex.enable_caching=false")
    job, spec = _job(config, tmp_path)
    message = job._gca_resource
    assert message.display_name == "lmpipe-demo"
    assert message.runtime_config.gcs_output_directory == "gs://test-bucket/root"
    assert dict(message.runtime_config.parameter_values) == {}
    assert message.service_account == "runner@test-project.iam.gserviceaccount.com"
    assert dict(message.labels) == {"team": "ml", "lmpipe-config": jobs.job_labels(config)["lmpipe-config"]}
    assert job.job_id.startswith("lmpipe-demo-")
    assert (job.project, job.location) == ("test-project", "us-central1")
    # The spec that is sent is the compiled one, with caching switched off on every task.
    with open(spec, encoding="utf-8") as f:
        compiled = yaml.safe_load(f)
    sent = dict(message.pipeline_spec)
    assert set(sent["root"]["dag"]["tasks"]) == set(compiled["root"]["dag"]["tasks"])
    assert all(not t["cachingOptions"].get("enableCache", False)
               for t in sent["root"]["dag"]["tasks"].values())


def test_config_label_changes_with_the_config():
    assert (jobs.job_labels(default_config())["lmpipe-config"]
            != jobs.job_labels(default_config("train.seed=7"))["lmpipe-config"])


def test_submit_sends_the_built_job(tmp_path, monkeypatch):
    config = default_config()
    job, _ = _job(config, tmp_path)
    buckets = []
    monkeypatch.setattr(pipeline_jobs.gcs_utils,
                        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                        lambda **kwargs: buckets.append(kwargs["output_artifacts_gcs_dir"]))
    built = type(job._gca_resource)(job._gca_resource)
    job.api_client = client = RecordingClient()
    job.submit()
    (request,) = client.requests
    assert request["parent"] == "projects/test-project/locations/us-central1"
    assert request["pipeline_job_id"] == job.job_id
    assert request["pipeline_job"] == built
    assert buckets == ["gs://test-bucket/root"]


def test_schedule_request_and_its_dry_run_mirror(tmp_path):
    config = default_config(*SCHEDULE_SETS)
    job, _ = _job(config, tmp_path)
    schedule = jobs.pipeline_schedule(config, job)
    arguments = jobs.schedule_arguments(config)
    dry_run = jobs.schedule_request(schedule, arguments)
    schedule.api_client = client = RecordingClient()
    schedule.create(**arguments)
    (request,) = client.requests
    sent = request["schedule"]
    assert request["parent"] == "projects/test-project/locations/us-central1"
    assert sent == dry_run
    assert sent.display_name == "lmpipe-demo-schedule"
    assert sent.cron == "TZ=Europe/Berlin 0 3 * * 1"
    assert sent.start_time.isoformat() == "2027-01-03T23:00:00+00:00"
    assert sent.end_time.isoformat() == "2027-12-31T00:00:00+00:00"
    assert (sent.max_concurrent_run_count, sent.max_run_count) == (2, 50)
    pipeline_job = sent.create_pipeline_job_request.pipeline_job
    assert pipeline_job.service_account == config.vertex.service_account
    assert pipeline_job.runtime_config.gcs_output_directory == "gs://test-bucket/root"
    assert set(dict(pipeline_job.pipeline_spec)["root"]["dag"]["tasks"]) == set(
        dict(job._gca_resource.pipeline_spec)["root"]["dag"]["tasks"])


def _cli(capsys, *args) -> tuple[int, str, str]:
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def _sets(*sets):
    return [a for s in (*VERTEX_SETS, *sets) for a in ("--set", s)]


def test_submit_dry_run_prints_the_request(capsys):
    status, out, err = _cli(capsys, "submit", "--config", "pipeline.yaml", *_sets(), "--dry-run")
    assert status == 0, err
    request = json.loads(out)
    assert request["parent"] == "projects/test-project/locations/us-central1"
    assert request["pipelineJobId"].startswith("lmpipe-demo-")
    assert request["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"] == "gs://test-bucket/root"
    assert request["pipelineJob"]["serviceAccount"] == "runner@test-project.iam.gserviceaccount.com"
    assert "pipelineSpec" not in request["pipelineJob"]


def test_schedule_dry_run_prints_the_request(capsys):
    status, out, err = _cli(capsys, "schedule", "--config", "pipeline.yaml",
                            *_sets(*SCHEDULE_SETS), "--dry-run")
    assert status == 0, err
    schedule = json.loads(out)["schedule"]
    assert schedule["cron"] == "TZ=Europe/Berlin 0 3 * * 1"
    assert schedule["maxConcurrentRunCount"] == "2"


def test_submit_without_credentials_is_one_line_and_exit_1():
    # The autouse fixture left no credentials: no key file, an empty gcloud directory, and
    # NO_GCE_CHECK, which the subprocess inherits.
    assert os.environ["NO_GCE_CHECK"] == "true" and "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ
    result = run_lmpipe("submit", "--target", "vertex", "--config", "pipeline.yaml", *_sets())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "lmpipe: error: no Google Cloud credentials found: run `gcloud auth "
        "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"]
    assert result.stdout == ""


@pytest.mark.parametrize("command, sets, message", [
    ("submit", ["vertex.project=null"],
     "config key 'vertex.project': is required to submit or schedule on Vertex AI"),
    ("schedule", [], "config key 'schedule.cron': is required to schedule on Vertex AI (e.g. '0 3 * * *')"),
])
def test_missing_vertex_settings_exit_2(capsys, command, sets, message):
    status, out, err = _cli(capsys, command, "--config", "pipeline.yaml", *_sets(*sets), "--dry-run")
    assert (status, out) == (2, "")
    assert err.splitlines() == [f"lmpipe: error: {message}"]
