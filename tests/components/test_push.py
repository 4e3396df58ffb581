"""push: only blessed models reach the serving directory, as numbered, pruned versions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components import push
from pipeline.config import PushConfig
from pipeline.errors import UsageError
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm

FAILURE = {"metric": "perplexity", "slice": "overall", "kind": "value",
           "threshold": {"valueThreshold": {"upperBound": 5.0}}, "value": 23.9}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("push") / "model"
    lm.write_bigram_model(directory, seed=1, sequence_length=16)
    return directory


def _blessing(tmp_path: Path, blessed: bool) -> Path:
    directory = tmp_path / f"blessing-{blessed}"
    directory.mkdir(exist_ok=True)
    (directory / "blessing.json").write_text(json.dumps({
        "blessed": blessed, "failures": [] if blessed else [FAILURE], "baseline": None,
        "metrics": {"perplexity": 4.5, "bits_per_byte": 1.25}}))
    return directory


def _push(tmp_path: Path, model_dir: Path, fingerprint: str, blessed: bool, serving: Path,
          keep: int = 5, run_id: str = "run-1") -> tuple[dict, Path]:
    out = tmp_path / f"pushed-{run_id}"
    out.mkdir()
    inputs = {"model": lm.artifact("Model", model_dir, fingerprint),
              "blessing": lm.artifact("ModelBlessing", _blessing(tmp_path, blessed), "fp-b")}
    push.run(inputs, {"pushed": str(out)}, Runtime(run_id=run_id, root=str(tmp_path)),
             push=PushConfig(serving_dir=str(serving), keep_versions=keep))
    return json.loads((out / "push.json").read_text()), out


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_blessed_models_become_numbered_versions_and_old_ones_are_pruned(tmp_path, model_dir):
    serving = tmp_path / "serving"
    records = [_push(tmp_path, model_dir, f"fp-{i}", True, serving, keep=2, run_id=f"run-{i}")[0]
               for i in (1, 2, 3)]
    assert [r["version"] for r in records] == [1, 2, 3]
    assert [r["pruned"] for r in records] == [[], [], [1]]
    assert sorted(os.listdir(serving)) == ["2", "3"]
    latest = serving / "3"
    assert records[2]["uri"] == str(latest) and records[2]["pushed"] is True
    card = json.loads((latest / "model_card.json").read_text())
    assert card["model_fingerprint"] == "fp-3" and card["run_id"] == "run-3"
    assert card["version"] == 3 and card["metrics"] == {"perplexity": 4.5, "bits_per_byte": 1.25}
    assert card["training"] == {"seed": 1, "sharpness": 2.0}
    pushed_files = _tree(latest)
    del pushed_files["model_card.json"]
    assert pushed_files == _tree(model_dir / "saved_model")
    out = tmp_path / "pushed-run-3"
    assert push.summary({"pushed": lm.artifact("PushedModel", out, "fp")}) == {
        "pushed_model": str(latest)}


def test_not_blessed_leaves_the_serving_directory_untouched(tmp_path, model_dir):
    serving = tmp_path / "serving"
    _push(tmp_path, model_dir, "fp-old", True, serving, run_id="first")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
              for p in serving.rglob("*")}
    record, out = _push(tmp_path, model_dir, "fp-new", False, serving, run_id="second")
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
             for p in serving.rglob("*")}
    assert after == before
    assert record["pushed"] is False and record["version"] is None and record["uri"] is None
    assert "not blessed" in record["reason"] and "perplexity" in record["reason"]
    assert push.summary({"pushed": lm.artifact("PushedModel", out, "fp")}) == {"pushed_model": None}


def test_not_blessed_does_not_create_a_serving_directory(tmp_path, model_dir):
    serving = tmp_path / "serving"
    record, _ = _push(tmp_path, model_dir, "fp", False, serving)
    assert record["pushed"] is False and not serving.exists()


def test_unreadable_blessing_is_a_usage_error(tmp_path, model_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "blessing.json").write_text('{"blessed": "yes"}')
    (tmp_path / "out").mkdir()
    inputs = {"model": lm.artifact("Model", model_dir, "fp"),
              "blessing": lm.artifact("ModelBlessing", bad, "fp-b")}
    with pytest.raises(UsageError, match="boolean 'blessed'"):
        push.run(inputs, {"pushed": str(tmp_path / "out")}, Runtime(run_id="r", root=str(tmp_path)),
                 push=PushConfig(serving_dir=str(tmp_path / "serving")))
    assert not (tmp_path / "serving").exists()
