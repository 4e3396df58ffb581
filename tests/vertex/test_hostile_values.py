"""Odd but plausible cloud values: project IDs, bucket URIs, images, directories outside the
Cloud Storage mount, system zoneinfo files as time zones, cron whitespace.

Each bad value is one line naming its key with exit status 2 and no spec; each good one
reaches the compiled spec or the request as written.
"""

from __future__ import annotations

import json

import pytest

from pipeline import cli
from tests.vertex.conftest import (VERTEX_SETS, config_from_args, read_spec, split_args,
                                   step_command, worker_pools)

SHA = "a" * 64
PROJECT = ("must be a Google Cloud project ID (6-30 lowercase letters, digits and hyphens, "
           "starting with a letter) or project number")
BUCKET = "must be gs://BUCKET/... with a Cloud Storage bucket name (lowercase letters, digits, -, _ and .)"
IMAGE = ("must be a container image such as REGION-docker.pkg.dev/PROJECT/REPO/lmpipe:TAG "
         "(lowercase repository path, optional :tag and @sha256:<64 hex digits>)")
MOUNT = ("must be under /gcs/BUCKET/ on Vertex AI, where its steps mount Cloud Storage{hint}; "
         "anywhere else is inside a step's container and lost when it ends")

BAD = [
    ("vertex.project=My_Project", f"config key 'vertex.project': {PROJECT}, got 'My_Project'"),
    ("vertex.project=proj", f"config key 'vertex.project': {PROJECT}, got 'proj'"),
    ("vertex.project=my-project-", f"config key 'vertex.project': {PROJECT}, got 'my-project-'"),
    ("vertex.dataflow.project=My_Project", f"config key 'vertex.dataflow.project': {PROJECT}, got 'My_Project'"),
    ("vertex.pipeline_root=gs:///root", f"config key 'vertex.pipeline_root': {BUCKET}, got 'gs:///root'"),
    ("vertex.pipeline_root='gs://My Bucket/root'",
     f"config key 'vertex.pipeline_root': {BUCKET}, got 'gs://My Bucket/root'"),
    ("vertex.pipeline_root=gs://b/root", f"config key 'vertex.pipeline_root': {BUCKET}, got 'gs://b/root'"),
    ("vertex.pipeline_root=gs://-bucket-/root",
     f"config key 'vertex.pipeline_root': {BUCKET}, got 'gs://-bucket-/root'"),
    ("vertex.dataflow.temp_location=gs://Temp/x",
     f"config key 'vertex.dataflow.temp_location': {BUCKET}, got 'gs://Temp/x'"),
    ("vertex.image=us-docker.pkg.dev/p/r/LMPIPE:1",
     f"config key 'vertex.image': {IMAGE}, got 'us-docker.pkg.dev/p/r/LMPIPE:1'"),
    ("vertex.image=lmpipe@sha256:abc", f"config key 'vertex.image': {IMAGE}, got 'lmpipe@sha256:abc'"),
    ("vertex.image='lmpipe:'", f"config key 'vertex.image': {IMAGE}, got 'lmpipe:'"),
    ("vertex.dataflow.sdk_container_image=beam//sdk",
     f"config key 'vertex.dataflow.sdk_container_image': {IMAGE}, got 'beam//sdk'"),
    ("pipeline.root=runs/demo",
     f"config key 'pipeline.root': {MOUNT.format(hint='')}, got 'runs/demo'"),
    ("pipeline.root=gs://test-bucket/root",
     "config key 'pipeline.root': " + MOUNT.format(
         hint=" (write /gcs/test-bucket/root for gs://test-bucket/root)") + ", got 'gs://test-bucket/root'"),
    ("push.serving_dir=gs://test-bucket/serving",
     "config key 'push.serving_dir': " + MOUNT.format(
         hint=" (write /gcs/test-bucket/serving for gs://test-bucket/serving)")
     + ", got 'gs://test-bucket/serving'"),
    ("push.serving_dir=/gcs/", f"config key 'push.serving_dir': {MOUNT.format(hint='')}, got '/gcs/'"),
    ("push.serving_dir=/gcs/B/serving", f"config key 'push.serving_dir': {MOUNT.format(hint='')}, got '/gcs/B/serving'"),
    ("vertex.train.tpu_topology=2x2",
     "config key 'vertex.train.tpu_topology': needs a TPU machine (a TPU_* accelerator_type or a "
     "TPU VM machine_type such as ct5lp-hightpu-4t), got '2x2' on n1-standard-8 with no accelerator"),
    ("data.inputs=[corpus/a.jsonl]",
     "config key 'data.inputs[0]': must be a gs:// URI when ingest runs on Dataflow "
     "(vertex.dataflow.steps), whose workers mount no Cloud Storage, got 'corpus/a.jsonl'"),
    ("data.inputs=[gs://test-bucket/a.jsonl, /gcs/test-bucket/b.jsonl]",
     "config key 'data.inputs[1]': must be a gs:// URI when ingest runs on Dataflow "
     "(vertex.dataflow.steps), whose workers mount no Cloud Storage, got '/gcs/test-bucket/b.jsonl'"),
    ("schedule.time_zone=localtime",
     "config key 'schedule.time_zone': must be an IANA time zone such as Europe/Berlin, got 'localtime'"),
    ("schedule.time_zone=posix/Europe/Berlin",
     "config key 'schedule.time_zone': must be an IANA time zone such as Europe/Berlin, got 'posix/Europe/Berlin'"),
    ("schedule.time_zone=right/UTC",
     "config key 'schedule.time_zone': must be an IANA time zone such as Europe/Berlin, got 'right/UTC'"),
]


def _cli(capsys, *args: str, sets: tuple[str, ...] = ()) -> tuple[int, str, str]:
    flags = [a for s in (*VERTEX_SETS, *sets) for a in ("--set", s)]
    status = cli.main([args[0], "--config", "pipeline.yaml", *flags, *args[1:]])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("setting, message", BAD, ids=[b[0] for b in BAD])
def test_bad_cloud_value_is_one_line_exit_2_and_no_spec(capsys, tmp_path, setting, message):
    output = tmp_path / "spec.yaml"
    status, out, err = _cli(capsys, "compile", "--output", str(output), sets=(setting,))
    assert (status, out) == (2, "")
    assert err.splitlines() == [f"lmpipe: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_good_odd_values_reach_the_spec(capsys, tmp_path):
    image = f"localhost:5000/team/lmpipe_2:v1.2-rc@sha256:{SHA}"
    output = tmp_path / "spec.yaml"
    sets = ("vertex.project=example.com:lm-project", f"vertex.image={image}",
            "vertex.pipeline_root=gs://my.bucket_2/root/", "pipeline.root=/gcs/my.bucket_2/root",
            "push.serving_dir=/gcs/my.bucket_2/serving/")
    status, out, err = _cli(capsys, "compile", "--output", str(output), sets=sets)
    assert (status, out.strip(), err) == (0, str(output), "")
    spec = read_spec(output)
    assert spec["defaultPipelineRoot"] == "gs://my.bucket_2/root/"
    for task in spec["root"]["dag"]["tasks"]:
        task_image, _, args = step_command(spec, task)
        assert task_image == image
        config = config_from_args(task, split_args(args)[0])
        assert (config.pipeline.root, config.push.serving_dir) == (
            "/gcs/my.bucket_2/root", "/gcs/my.bucket_2/serving/")
    _, _, ingest_args = step_command(spec, "ingest")
    beam_args = config_from_args("ingest", split_args(ingest_args)[0]).pipeline.beam_args
    # The trailing slash of the pipeline root does not double in Dataflow's locations.
    assert {"--project=example.com:lm-project", "--temp_location=gs://my.bucket_2/root/dataflow/tmp",
            f"--sdk_container_image={image}"} <= set(beam_args)


def test_tpu_topology_reaches_the_worker_pools_of_a_tpu_machine(capsys, tmp_path):
    output = tmp_path / "spec.yaml"
    status, _, err = _cli(capsys, "compile", "--output", str(output), sets=(
        "vertex.train.machine_type=ct5lp-hightpu-4t", "vertex.train.tpu_topology=2x4",
        "train.strategy=tpu"))
    assert (status, err) == (0, "")
    pools = worker_pools(read_spec(output), "train")
    assert [p["machine_spec"] for p in pools] == [
        {"machine_type": "ct5lp-hightpu-4t", "tpu_topology": "2x4"}]


def test_project_number_is_a_project(capsys, tmp_path):
    status, _, err = _cli(capsys, "compile", "--output", str(tmp_path / "s.yaml"),
                          sets=("vertex.project='123456789012'",))
    assert (status, err) == (0, "")


@pytest.mark.parametrize("zone", ["EST", "Etc/GMT-2", "America/Argentina/Buenos_Aires", "UTC"])
def test_iana_zones_reach_the_schedule(capsys, zone):
    status, out, err = _cli(capsys, "schedule", "--dry-run",
                            sets=("schedule.cron='0 3 * * 1'", f"schedule.time_zone={zone}"))
    assert status == 0, err
    assert json.loads(out)["schedule"]["cron"] == f"TZ={zone} 0 3 * * 1"


def test_cron_whitespace_becomes_single_spaces_in_the_request(capsys):
    status, out, err = _cli(capsys, "schedule", "--dry-run",
                            sets=('schedule.cron="\\t0  3 *\\t* 1\\n"',))
    assert status == 0, err
    assert json.loads(out)["schedule"]["cron"] == "TZ=UTC 0 3 * * 1"


def test_inputs_ingest_reads_in_its_own_step(capsys, tmp_path):
    output = tmp_path / "spec.yaml"
    in_step = "vertex.dataflow.runner=DirectRunner"
    sets = (in_step, "data.inputs=[/gcs/test-bucket/c/*.jsonl]")
    status, out, err = _cli(capsys, "compile", "--output", str(output), sets=sets)
    assert (status, out.strip(), err) == (0, str(output), "")
    status, out, err = _cli(capsys, "compile", "--output", str(tmp_path / "other.yaml"),
                            sets=(in_step, "data.inputs=[corpus/a.jsonl]"))
    assert (status, out) == (2, "")
    assert err.strip() == (
        "lmpipe: error: config key 'data.inputs[0]': must be a gs:// URI, a /gcs/ path or an "
        "absolute path in the image on Vertex AI (a relative path is read from the step's "
        "working directory), got 'corpus/a.jsonl'")
    assert not (tmp_path / "other.yaml").exists()
