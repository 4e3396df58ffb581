"""Bad `vertex:` and `schedule:` values: exit status 2 and one line naming the key."""

from __future__ import annotations

import pytest

from pipeline import cli
from tests.conftest import run_lmpipe
from tests.vertex.conftest import VERTEX_SETS

CASES = [
    ("vertex.location=mars", "config key 'vertex.location': must be a region such as us-central1, got 'mars'"),
    ("vertex.pipeline_root=/tmp/root", "config key 'vertex.pipeline_root': must be a gs:// location, got '/tmp/root'"),
    ("vertex.image='my image'", "config key 'vertex.image': must be a non-empty name without spaces, got 'my image'"),
    ("vertex.labels=[Team=ML]", "config key 'vertex.labels': must be key=value with lowercase letters, digits, _ or -, got 'Team=ML'"),
    ("vertex.service_account=runner", "config key 'vertex.service_account': must be a service account email, got 'runner'"),
    ("vertex.train.replica_count=0", "config key 'vertex.train.replica_count': must be > 0, got 0"),
    ("vertex.train.accelerator_type=nvidia_l4",
     "config key 'vertex.train.accelerator_type': must be a Vertex accelerator such as NVIDIA_L4 or TPU_V3, got 'nvidia_l4'"),
    ("vertex.dataflow.max_num_workers=-1", "config key 'vertex.dataflow.max_num_workers': must be > 0, got -1"),
    ("vertex.dataflow.runner=FlinkRunner",
     "config key 'vertex.dataflow.runner': expected one of DataflowRunner, DirectRunner, got 'FlinkRunner'"),
    ("vertex.dataflow.temp_location=/tmp", "config key 'vertex.dataflow.temp_location': must be a gs:// location, got '/tmp'"),
    ("vertex.dataflow.extra_args=[num_workers=3]",
     "config key 'vertex.dataflow.extra_args': must be Beam options starting with --, got ['num_workers=3']"),
    ("vertex.tune.boot_disk_size_gb=5", "config key 'vertex.tune.boot_disk_size_gb': must be >= 10, got 5"),
    ("vertex.colour=red", "config key 'vertex.colour': unknown key (known here: cpu_limit, dataflow, "
     "enable_caching, image, labels, location, memory_limit, pipeline_root, project, service_account, "
     "train, tune)"),
    ("schedule.cron='every monday'",
     "config key 'schedule.cron': must be a cron expression of five fields such as '0 3 * * *' "
     "(has 2 fields, not 5), got 'every monday'"),
    ("schedule.time_zone=Mars/Olympus",
     "config key 'schedule.time_zone': must be an IANA time zone such as Europe/Berlin, got 'Mars/Olympus'"),
    ("schedule.start_time='next week'",
     "config key 'schedule.start_time': must be an RFC 3339 time with a zone such as 2027-01-01T03:00:00Z, got 'next week'"),
    ("schedule.start_time='2027-01-01T03:00:00'",
     "config key 'schedule.start_time': must be an RFC 3339 time with a zone such as 2027-01-01T03:00:00Z, got '2027-01-01T03:00:00'"),
    ("schedule.max_concurrent_runs=0", "config key 'schedule.max_concurrent_runs': must be > 0, got 0"),
    ("vertex.location=mars-central1", "config key 'vertex.location': must be a region where Vertex AI "
     "runs (such as us-central1 or europe-west4), got 'mars-central1'"),
    ("vertex.memory_limit=lots", "config key 'vertex.memory_limit': must be an integer with an optional "
     "unit K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei, such as 16G, got 'lots'"),
    ("vertex.memory_limit=16GB", "config key 'vertex.memory_limit': must be an integer with an optional "
     "unit K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei, such as 16G, got '16GB'"),
    ("vertex.cpu_limit='abc'", "config key 'vertex.cpu_limit': must be a number of CPUs such as 4 or "
     "0.5, or millicores such as 500m, got 'abc'"),
    ("vertex.cpu_limit='-1'", "config key 'vertex.cpu_limit': must be a number of CPUs such as 4 or "
     "0.5, or millicores such as 500m, got '-1'"),
    ("vertex.dataflow.steps=[train, push]", "config key 'vertex.dataflow.steps[0]': expected one of "
     "the Beam steps ingest, labels, transform, evaluate, got 'train'"),
    ("vertex.dataflow.steps=[ingest, tokeniser]", "config key 'vertex.dataflow.steps[1]': expected one "
     "of the Beam steps ingest, labels, transform, evaluate, got 'tokeniser'"),
    *[(f"schedule.cron='{cron}'", f"config key 'schedule.cron': must be a cron expression of five "
       f"fields such as '0 3 * * *' ({why}), got '{cron}'") for cron, why in [
        ("a b c d e", "minute 'a' is not *, a value, a range a-b or one of those with /step"),
        ("61 3 * * 1", "minute '61' is not in 0-59"),
        ("0 25 * * 1", "hour '25' is not in 0-23"),
        ("*/0 * * * *", "minute '*/0' has a step below 1"),
        ("0 3 * * 8", "day of week '8' is not in 0-7 or SUN-SAT"),
        ("0 3 0 * *", "day of month '0' is not in 1-31"),
        ("0 3 * 13 *", "month '13' is not in 1-12 or JAN-DEC"),
        ("0 3 * * 1,9", "day of week '1,9': '9' is not in 0-7 or SUN-SAT"),
        ("0 3 * * FRI-MON", "day of week 'FRI-MON' is a range whose start is after its end"),
        ("0 3 * jan-mar mon", "month 'jan-mar': write names in capitals ('JAN-MAR')"),
        ("0 3 * * MON,fri", "day of week 'MON,fri': 'fri': write names in capitals ('FRI')"),
        ("0 3 L * *", "day of month 'L' is not in 1-31"),
        ("TZ=UTC 0 3 * * *", "the time zone goes in schedule.time_zone, not in a TZ= prefix"),
        ("0 0 31 2 *", "day of month '31' never falls in month '2': the schedule would never run"),
        ("0 0 30,31 FEB *", "day of month '30,31' never falls in month 'FEB': the schedule would "
         "never run"),
        ("0 0 31 4-6/2,9 */2", "day of month '31' never falls in month '4-6/2,9': the schedule "
         "would never run"),
    ]],
]
# Checks that need the DAG or the rest of the config run when compiling.
COMPILE_CASES = [
    ("vertex.train.accelerator_type=NVIDIA_GTX_1080",
     "config key 'vertex.train.accelerator_type': expected one of NVIDIA_TESLA_K80"),
    ("vertex.train.replica_count=3",
     "config key 'vertex.train.replica_count': more than one replica needs train.strategy: "
     "multi_worker, got 3 replicas with 'auto'"),
    # labels is a Beam step, but only in a classification task's DAG.
    ("vertex.dataflow.steps=[ingest, labels]",
     "config key 'vertex.dataflow.steps[1]': expected one of this DAG's Beam steps ingest, "
     "transform, evaluate, got 'labels'"),
    ("pipeline.name=" + "a" * 114,
     "config key 'pipeline.name': must be at most 113 characters for Vertex AI (run IDs add a "
     "15-character timestamp), got 114 chars"),
    ("pipeline.name=2024-model",
     "config key 'pipeline.name': must start with a letter for Vertex AI (its pipeline name is "
     "'2024-model'), got '2024-model'"),
    ("vertex.train.machine_type=ct5lp-hightpu-4t",
     "config key 'train.strategy': must be tpu or auto on a TPU machine (ct5lp-hightpu-4t), got 'mirrored'"),
]


def _compile(capsys, tmp_path, *sets: str) -> tuple[int, str, str]:
    args = [a for s in (*VERTEX_SETS, *sets) for a in ("--set", s)]
    status = cli.main(["compile", "--config", "pipeline.yaml", *args, "--output", str(tmp_path / "s.yaml")])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("setting, message", CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_and_exit_2(capsys, tmp_path, setting, message):
    status, out, err = _compile(capsys, tmp_path, setting)
    assert (status, out) == (2, "")
    assert err.splitlines() == [f"lmpipe: error: {message}"]
    assert not (tmp_path / "s.yaml").exists()


@pytest.mark.parametrize("settings, message", [
    (["schedule.start_time='2027-02-01T00:00:00Z'", "schedule.end_time='2027-01-01T00:00:00Z'"],
     "config key 'schedule.end_time': must be after schedule.start_time (2027-02-01T00:00:00Z), "
     "got 2027-01-01T00:00:00Z"),
    (["vertex.dataflow.setup_file=/app/setup.py", "vertex.dataflow.sdk_container_image=img:1"],
     "config key 'vertex.dataflow.setup_file': set either setup_file or sdk_container_image, not both"),
])
def test_bad_combination_is_one_line_and_exit_2(capsys, tmp_path, settings, message):
    status, _, err = _compile(capsys, tmp_path, *settings)
    assert status == 2
    assert err.splitlines() == [f"lmpipe: error: {message}"]


@pytest.mark.parametrize("setting, start", COMPILE_CASES, ids=[c[0] for c in COMPILE_CASES])
def test_vertex_only_checks_fail_the_compile(capsys, tmp_path, setting, start):
    sets = [setting]
    if "ct5lp" in setting:
        sets.append("train.strategy=mirrored")
    status, out, err = _compile(capsys, tmp_path, *sets)
    assert (status, out) == (2, "")
    (line,) = err.splitlines()
    assert line.startswith(f"lmpipe: error: {start}")
    assert not (tmp_path / "s.yaml").exists()


def test_bad_value_in_a_fresh_process_has_no_traceback(tmp_path):
    args = [a for s in (*VERTEX_SETS, "vertex.location=mars") for a in ("--set", s)]
    result = run_lmpipe("submit", "--config", "pipeline.yaml", *args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "lmpipe: error: config key 'vertex.location': must be a region such as us-central1, got 'mars'"]
