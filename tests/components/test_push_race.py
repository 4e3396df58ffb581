"""Two runs on different roots racing to push into one serving directory (issue 21, break
1): each blessing was judged with nothing in service, so only the first push may publish;
the second is refused, because its check runs under the lock on the serving directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.core.contracts import serving_dir
from tests import lm_fixtures as lm
from tests.conftest import REPO

WAITING = "holds its lock; waiting for it"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    """Two different model artifacts."""
    root = tmp_path_factory.mktemp("race")
    for seed in (1, 2):
        lm.write_bigram_model(root / f"model-{seed}", seed=seed, sequence_length=16)
    return [root / f"model-{seed}" for seed in (1, 2)]


def _blessing(directory: Path, model: Path) -> Path:
    """What evaluate writes for a language model judged while nothing was in service."""
    directory.mkdir()
    digest = serving_dir.saved_model_digest(str(model / "saved_model"))
    (directory / "blessing.json").write_text(json.dumps({
        "blessed": True, "failures": [], "baseline": None, "compared_with_service": True,
        "candidate": {"uri": str(model), "fingerprint": "fp",
                      "saved_model_sha256": digest}}))
    return directory


def _start_push(tmp_path: Path, index: int, model: Path, serving: Path) -> subprocess.Popen:
    """`lmpipe component push` of run `index` (its own root), stderr to `err-<index>`."""
    config = tmp_path / f"run-{index}.yaml"
    config.write_text(yaml.safe_dump({"pipeline": {"root": str(tmp_path / f"root-{index}")},
                                      "data": {"inputs": ["unused"]},
                                      "push": {"serving_dir": str(serving)}}))
    blessing = _blessing(tmp_path / f"blessing-{index}", model)
    with open(tmp_path / f"err-{index}", "w", encoding="utf-8") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "component", "push", "--config", str(config),
             "--input", f"model={model}", "--input", f"blessing={blessing}",
             "--output", f"pushed={tmp_path / f'pushed-{index}'}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True)


def _wait_until_both_wait(tmp_path: Path, processes: list, timeout: float = 240) -> None:
    """Until each process says it waits for the lock (or, without a lock, has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [WAITING in (tmp_path / f"err-{i}").read_text() for i in range(len(processes))]
        if all(w or p.poll() is not None for w, p in zip(waiting, processes)):
            return
        time.sleep(0.2)
    raise AssertionError("the pushes neither waited for the lock nor ended")


def test_two_pushes_judged_against_nothing_in_service_publish_once(tmp_path, models):
    serving = tmp_path / "serving"
    # Hold the lock while both start, so that both look at the serving directory only
    # after the other may have pushed: a check made before taking the lock would pass twice.
    with serving_dir.push_lock(str(serving)):
        processes = [_start_push(tmp_path, i, models[i], serving) for i in range(2)]
        try:
            _wait_until_both_wait(tmp_path, processes)
        except BaseException:
            for process in processes:
                process.kill()
            raise
    codes = [process.wait(timeout=240) for process in processes]
    errors = [(tmp_path / f"err-{i}").read_text() for i in range(2)]
    assert codes == [0, 0], errors
    records = [json.loads((tmp_path / f"pushed-{i}" / "push.json").read_text()) for i in range(2)]
    [winner] = [i for i, record in enumerate(records) if record["pushed"]]
    loser = 1 - winner
    assert records[winner]["version"] == 1 and records[winner]["uri"] == str(serving / "1")
    assert sorted(p.name for p in serving.iterdir()) == ["1"]
    [version] = serving_dir.versions(str(serving))
    assert version.digest() == serving_dir.saved_model_digest(
        str(models[winner] / "saved_model"))
    reason = (f"refused: evaluate judged this model with nothing in service, and version 1 "
              f"(SavedModel {version.digest()[:12]}) pushed by run {version.card['run_id']} is "
              "in service now; a new run judges it against version 1")
    assert records[loser].pop("infra_validation")["passed"] is True  # served, then refused
    assert records[loser] == {"pushed": False, "version": None, "uri": None, "pruned": [],
                              "replaced": None, "reason": reason}
    assert f"[push] {reason}; serving stays at version 1" in errors[loser]
    assert "Traceback" not in errors[loser]
