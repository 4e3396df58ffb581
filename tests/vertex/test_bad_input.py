"""Bad `--output`, cron, limits and names for compile/submit/schedule: one line, exit status 2.

The config checks copy the rules of kfp and google-cloud-aiplatform; these tests also hold
the copies to the libraries and check what gets past a stale copy is still one line.
"""

from __future__ import annotations

import os
import re

import pytest

from pipeline import cli
from pipeline.core.config import ScheduleConfig, VertexConfig, cloud
from pipeline.vertex import checks
from tests.conftest import run_lmpipe
from tests.vertex.conftest import VERTEX_SETS, default_config, read_spec

SCHEDULE_SET = "schedule.cron='0 3 * * 1'"


def _run(capsys, command: str, *sets: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    args = [a for s in (*VERTEX_SETS, *sets) for a in ("--set", s)]
    status = cli.main([command, "--config", "pipeline.yaml", *args, *extra])
    out, err = capsys.readouterr()
    return status, out, err


def _output_cases(tmp_path) -> list[tuple[str, str]]:
    (tmp_path / "d.yaml").mkdir()
    (tmp_path / "f").write_text("a file")
    return [
        (str(tmp_path), f"is a directory; give a file such as {tmp_path / 'pipeline.yaml'}"),
        (str(tmp_path / "spec.txt"), "must end with .yaml or .yml (kfp writes the spec as YAML)"),
        (str(tmp_path / "spec.json"), "must end with .yaml or .yml (kfp writes the spec as YAML)"),
        (str(tmp_path / "d.yaml"), f"is a directory; give a file such as {tmp_path / 'd.yaml' / 'pipeline.yaml'}"),
        (str(tmp_path / "f" / "x.yaml"), f"{tmp_path / 'f'} is a file, not a directory"),
        (str(tmp_path / "f" / "sub" / "x.yaml"), f"{tmp_path / 'f'} is a file, not a directory"),
        ("/proc/x.yaml", "cannot write it (No such file or directory)"),
    ]


def test_bad_output_is_one_line_and_exit_2(capsys, tmp_path):
    for output, message in _output_cases(tmp_path):
        status, out, err = _run(capsys, "compile", extra=("--output", output))
        assert (status, out) == (2, ""), output
        assert err.splitlines() == [f"lmpipe: error: --output {output}: {message}"]
    assert sorted(os.listdir(tmp_path)) == ["d.yaml", "f"]
    assert os.listdir(tmp_path / "d.yaml") == []


@pytest.mark.parametrize("name", ["spec.yaml", "spec.yml", "new/dir/spec.yaml"])
def test_good_output_is_written(capsys, tmp_path, name):
    output = tmp_path / name
    status, out, err = _run(capsys, "compile", extra=("--output", str(output)))
    assert (status, out.strip(), err) == (0, str(output), "")
    assert read_spec(output)["pipelineInfo"]["name"] == "lmpipe-demo"


def test_a_compile_that_fails_while_writing_leaves_the_previous_spec(capsys, tmp_path, monkeypatch):
    from kfp import compiler

    output = tmp_path / "spec.yaml"
    assert _run(capsys, "compile", extra=("--output", str(output)))[0] == 0
    previous = output.read_text()

    def write_half_then_fail(self, pipeline_func, package_path, **kwargs):
        with open(package_path, "w") as f:
            f.write(previous[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compiler.Compiler, "compile", write_half_then_fail)
    status, out, err = _run(capsys, "compile", extra=("--output", str(output)))
    assert (status, out) == (2, "")
    assert err.splitlines() == [f"lmpipe: error: --output {output}: cannot write it (No space left on device)"]
    assert output.read_text() == previous
    assert os.listdir(tmp_path) == ["spec.yaml"]


def test_output_directory_in_a_fresh_process_has_no_traceback(tmp_path):
    args = [a for s in VERTEX_SETS for a in ("--set", s)]
    result = run_lmpipe("compile", "--target", "vertex", "--config", "pipeline.yaml", *args,
                        "--output", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"lmpipe: error: --output {tmp_path}: is a directory; give a file such as {tmp_path / 'pipeline.yaml'}"]


@pytest.mark.parametrize("cron", ["a b c d e", "61 3 * * 1", "0 25 * * 1", "*/0 * * * *", "0 3 * * 8"])
def test_bad_cron_fails_schedule_dry_run_in_a_fresh_process(cron):
    args = [a for s in (*VERTEX_SETS, f"schedule.cron='{cron}'") for a in ("--set", s)]
    result = run_lmpipe("schedule", "--target", "vertex", "--config", "pipeline.yaml", *args, "--dry-run")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("lmpipe: error: config key 'schedule.cron': must be a cron expression")
    assert line.endswith(f"got '{cron}'")


@pytest.mark.parametrize("cron", [
    "0 3 * * *", "59 23 31 12 6", "0 0 1 1 0", "0 3 * * 7", "*/15 9-17 * * 1-5", "0 9-17/2 * * *",
    "0,30 3 1,15 JAN-MAR MON-FRI", "0 3 * DEC SUN", "5-10/5 * * * *", "0  3  *  *  *",
    # February 29 comes in leap years; with both day fields set, cron runs on either.
    "0 0 29 2 *", "0 0 31 2 MON", "0 0 31 1-2 *", "0 0 31 */2 *",
])
def test_good_cron_is_accepted(cron):
    assert ScheduleConfig(cron=cron).cron == cron


@pytest.mark.parametrize("cpu, memory", [("4", "16G"), ("0.5", "512Mi"), ("500m", "1000"), (".5", "1Ti")])
def test_good_limits_reach_the_spec(tmp_path, capsys, cpu, memory):
    output = tmp_path / "spec.yaml"
    status, _, err = _run(capsys, "compile", f"vertex.cpu_limit='{cpu}'", f"vertex.memory_limit='{memory}'",
                          extra=("--output", str(output)))
    assert (status, err) == (0, "")
    executors = read_spec(output)["deploymentSpec"]["executors"]
    resources = [e["container"]["resources"] for e in executors.values() if "resources" in e["container"]]
    assert resources and all(r["resourceCpuLimit"] == cpu and r["resourceMemoryLimit"] == memory
                             for r in resources)


def test_region_list_is_aiplatforms_single_regions():
    from google.cloud.aiplatform.constants import base

    single = {r for r in base.SUPPORTED_REGIONS if re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", r)}
    assert cloud.VERTEX_REGIONS == single
    for region in sorted(single):
        assert VertexConfig(location=region).location == region


def test_kfp_refusal_past_a_stale_check_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cloud, "_KFP_MEMORY", re.compile(".*"))
    output = tmp_path / "spec.yaml"
    status, out, err = _run(capsys, "compile", "vertex.memory_limit=lots", extra=("--output", str(output)))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        "lmpipe: error: kfp cannot compile the pipeline: Invalid memory string. Should be a number "
        'or a number followed by one of "E", "Ei", "P", "Pi", "T", "Ti", "G", "Gi", "M", "Mi", "K", "Ki".']
    assert not output.exists()


def test_aiplatform_refusal_past_a_stale_check_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(cloud, "VERTEX_REGIONS", cloud.VERTEX_REGIONS | {"mars-central1"})
    status, out, err = _run(capsys, "submit", "vertex.location=mars-central1", extra=("--dry-run",))
    assert (status, out) == (2, "")
    (line,) = err.splitlines()
    assert line.startswith("lmpipe: error: Vertex AI refuses the request: Unsupported region for Vertex AI")


def test_pipeline_name_vertex_cannot_use_is_one_line(capsys, monkeypatch):
    # Without the check, kfp compiles '2024-model' but aiplatform refuses its job ID.
    monkeypatch.setattr(checks, "_check_name", lambda name: None)
    status, _, err = _run(capsys, "schedule", SCHEDULE_SET, "pipeline.name=2024-model", extra=("--dry-run",))
    assert status == 2
    (line,) = err.splitlines()
    assert line.startswith("lmpipe: error: Vertex AI refuses the request: Generated job ID: 2024-model-")


def test_longest_pipeline_name_submits(capsys):
    name = "a" * 113
    assert default_config(f"pipeline.name={name}").pipeline.name == name
    status, out, err = _run(capsys, "schedule", SCHEDULE_SET, f"pipeline.name={name}", extra=("--dry-run",))
    assert (status, err) == (0, "")
    assert f'"displayName": "{name}-schedule"' in out
