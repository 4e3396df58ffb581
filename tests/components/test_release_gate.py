"""The release gate end to end through the local runner: evaluate against the model in
service, push or refuse, the report, the model card, and generating from what was pushed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline import serving as serving_lib
from pipeline.cli import format_run
from pipeline.core.contracts import serving_dir
from pipeline.history import format_lineage
from pipeline.local_runner import run_pipeline
from tests import lm_fixtures as lm
from tests.components import release_components, release_interleaving
from tests.conftest import build_config, tiny_raw_config

SEQUENCE_LENGTH = 16


def _seeds_by_quality(records) -> dict[str, int]:
    """Bigram seeds whose bits per byte on the eval windows are best, middling and worst."""
    bpb = {seed: lm.reference_metrics(lm.bigram_table(seed, release_components.SHARPNESS),
                                      records)["bits_per_byte"] for seed in range(1, 9)}
    ordered = sorted(bpb, key=bpb.get)
    chosen = {"better": ordered[0], "middle": ordered[len(ordered) // 2], "worse": ordered[-1]}
    # Clear of the 0.5% change threshold either way.
    assert bpb[chosen["middle"]] > 1.01 * bpb[chosen["better"]]
    assert bpb[chosen["worse"]] > 1.01 * bpb[chosen["middle"]]
    return {**chosen, "bpb": bpb}


def _config(tmp_path: Path, seed: int, root: str = "root"):
    """The release gate's config: `train.seed` picks the bigram model; every root pushes
    into `tmp_path/serving`."""
    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["pipeline"]["root"] = str(tmp_path / root)
    raw["transform"] = {"sequence_length": SEQUENCE_LENGTH}
    raw["train"] = {**raw["train"], "seed": seed}
    raw["evaluation"] = {"max_perplexity": 1000.0, "num_samples": 2, "sample_max_tokens": 4,
                         "sample_prompt_words": 4}
    return build_config(raw)


def _run(tmp_path: Path, seed: int) -> tuple[dict, object]:
    config = _config(tmp_path, seed)
    return run_pipeline(config, nodes=release_components.nodes()), config


def _read(uri: str, name: str) -> dict:
    return json.loads(Path(uri, name).read_text())


def _snapshot(directory: Path) -> dict:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_worse_model_is_refused_and_better_one_replaces_the_model_in_service(tmp_path):
    records = release_components.records(SEQUENCE_LENGTH)
    seeds = _seeds_by_quality(records)
    serving = tmp_path / "serving"

    # Nothing in service: the value threshold alone decides, and version 1 is pushed.
    first, config = _run(tmp_path, seeds["middle"])
    assert first["status"] == "succeeded" and first["metrics"]["blessed"] is True
    assert first["pushed_model"] == str(serving / "1")
    assert first["metrics"]["eval_bits_per_byte"] == pytest.approx(
        seeds["bpb"][seeds["middle"]], rel=1e-4)
    evaluation = first["components"]["evaluate"]["outputs"]["evaluation"]
    assert _read(evaluation, "metrics.json")["baseline"] is None
    assert f"report: {os.path.join(evaluation, 'report.html')}" in format_run(
        first, config.pipeline.root)
    in_service = _snapshot(serving)

    # A worse model: compared with version 1, refused, and serving is left as it was.
    second, _ = _run(tmp_path, seeds["worse"])
    assert second["status"] == "succeeded"
    assert second["metrics"]["blessed"] is False and second["pushed_model"] is None
    verdict = _read(second["components"]["evaluate"]["outputs"]["blessing"], "blessing.json")
    assert verdict["baseline"]["version"] == 1
    [failure] = verdict["failures"]
    assert (failure["metric"], failure["slice"], failure["kind"]) == (
        "bits_per_byte", "overall", "change")
    assert failure["candidate"] == pytest.approx(seeds["bpb"][seeds["worse"]], rel=1e-4)
    assert failure["baseline"] == pytest.approx(seeds["bpb"][seeds["middle"]], rel=1e-4)
    assert _snapshot(serving) == in_service
    pushed = _read(second["components"]["push"]["outputs"]["pushed"], "push.json")
    assert pushed["pushed"] is False and pushed["reason"].startswith(
        "not blessed: bits_per_byte on overall")
    report = Path(second["components"]["evaluate"]["outputs"]["evaluation"], "report.html")
    assert "NOT BLESSED" in report.read_text()

    # A better model: blessed against version 1 and pushed as version 2, which replaces it.
    third, _ = _run(tmp_path, seeds["better"])
    assert third["metrics"]["blessed"] is True and third["pushed_model"] == str(serving / "2")
    metrics = _read(third["components"]["evaluate"]["outputs"]["evaluation"], "metrics.json")
    comparison = metrics["comparison"]["bits_per_byte"]
    assert comparison["baseline"] == pytest.approx(seeds["bpb"][seeds["middle"]], rel=1e-4)
    assert comparison["candidate"] == pytest.approx(seeds["bpb"][seeds["better"]], rel=1e-4)
    card = _read(str(serving / "2"), "model_card.json")
    first_card = _read(str(serving / "1"), "model_card.json")
    assert card["run_id"] == third["run_id"] and card["lineage"]["evaluate_run_id"] == third["run_id"]
    assert card["replaces"]["version"] == 1 and card["replaces"]["run_id"] == first["run_id"]
    assert card["replaces"]["saved_model_sha256"] == first_card["model"]["saved_model_sha256"]
    assert card["baseline"]["version"] == 1
    assert card["comparison"] == metrics["comparison"]
    assert card["metrics"] == metrics["overall"] and card["slices"] == metrics["slices"]
    examples = third["components"]["data"]["outputs"]["examples"]
    assert card["data"]["examples"]["uri"] == examples
    assert card["data"]["documents"]["uri"] == third["components"]["data"]["outputs"]["documents"]
    assert card["model"]["uri"] == third["components"]["train"]["outputs"]["model"]
    assert card["training"] == {"seed": seeds["better"], "sharpness": release_components.SHARPNESS}
    samples = _read(third["components"]["evaluate"]["outputs"]["evaluation"], "samples.json")
    table = lm.bigram_table(seeds["better"], release_components.SHARPNESS)
    assert [s["greedy"] for s in samples["samples"]] == [
        lm.greedy_completion(table, s["prompt"], 4) for s in samples["samples"]]
    assert [s["prompt"] for s in samples["samples"]] == [
        "Return the square root", "Remove the file at"]

    # What is in service now generates, streamed, what the better model would.
    model_dir = serving_lib.resolve_model_dir(str(serving))
    signature = serving_lib.load_signature(model_dir, "generate")
    pieces = list(serving_lib.stream(signature, "abc", max_tokens=7, chunk=3, temperature=0.0,
                                     top_k=0, top_p=1.0, seed=0))
    assert [len(p) for p in pieces] == [3, 3, 1]
    assert "".join(pieces) == lm.greedy_completion(table, "abc", 7)


def test_a_model_judged_before_another_run_pushed_is_refused_then_judged_again(tmp_path):
    """Issue 21, break 1, through the local runner: this run evaluates a worse model while
    nothing is in service; another run (another root) pushes a better one before this
    run's push, which must not publish over it."""
    seeds = _seeds_by_quality(release_components.records(SEQUENCE_LENGTH))
    serving = tmp_path / "serving"
    late = _config(tmp_path, seeds["worse"], root="late")
    other = _config(tmp_path, seeds["better"], root="other")
    release_interleaving.OTHER[:] = [(other, release_components.nodes())]

    first = run_pipeline(late, nodes=release_interleaving.nodes("other_run"))
    assert first["status"] == "succeeded" and first["metrics"]["blessed"] is True
    assert first["pushed_model"] is None
    [in_service] = serving_dir.versions(str(serving))
    other_run = _read(other.pipeline.root, "latest_run.json")
    assert in_service.number == 1 and in_service.card["run_id"] == other_run["run_id"]
    pushed = _read(first["components"]["push"]["outputs"]["pushed"], "push.json")
    assert pushed["pushed"] is False and pushed["reason"] == (
        f"refused: evaluate judged this model with nothing in service, and version 1 "
        f"(SavedModel {in_service.digest()[:12]}) pushed by run {other_run['run_id']} is in "
        "service now; a new run judges it against version 1")

    # The next run judges the model against version 1: worse, so version 1 stays.
    again = run_pipeline(late, nodes=release_components.nodes())
    assert again["components"]["evaluate"]["status"] == "executed"
    assert again["metrics"]["blessed"] is False and again["pushed_model"] is None
    verdict = _read(again["components"]["evaluate"]["outputs"]["blessing"], "blessing.json")
    assert verdict["compared_with_service"] is True and verdict["baseline"]["version"] == 1
    assert [v.number for v in serving_dir.versions(str(serving))] == [1]


def test_a_push_killed_before_its_record_is_completed_by_the_rerun(tmp_path):
    """A push that renamed its version into place and was stopped before the runner
    recorded it: the rerun finds its model in service and completes the push in its own
    name, so the model card and `lmpipe lineage` credit the same run."""
    config = _config(tmp_path, seed=1)
    serving = tmp_path / "serving"
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, nodes=release_interleaving.nodes("killed_push"))
    killed = _read(config.pipeline.root, "latest_run.json")
    assert killed["status"] == "failed"
    assert serving_dir.read_card(str(serving / "1"))["run_id"] == killed["run_id"]

    rerun = run_pipeline(config, nodes=release_components.nodes())
    assert rerun["components"]["push"]["status"] == "executed"
    assert rerun["pushed_model"] == str(serving / "1")
    card = serving_dir.read_card(str(serving / "1"))
    assert card["run_id"] == card["lineage"]["push_run_id"] == rerun["run_id"]
    assert card["completes_push_of_run"] == killed["run_id"] and card["replaces"] is None
    assert f"serving version 1, written by push in run {rerun['run_id']}," in format_lineage(
        str(serving / "1"))
    pushed = _read(rerun["components"]["push"]["outputs"]["pushed"], "push.json")
    assert pushed.pop("infra_validation")["passed"] is True
    assert pushed == {"pushed": True, "version": 1, "uri": str(serving / "1"), "pruned": [],
                      "replaced": None, "reason": (
        f"blessed (no model in service); run {killed['run_id']} published it and was "
        "stopped before recording its push")}
    assert sorted(os.listdir(serving)) == ["1"]
