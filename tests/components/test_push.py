"""push: only blessed models reach the serving directory, as numbered, pruned versions with
a model card that names the run, the data and the version replaced."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from components import push
from pipeline.core.contracts import serving_dir
from pipeline.core.config import PushConfig
from pipeline.core.errors import UsageError
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm

FAILURE = {"metric": "bits_per_byte", "slice": "overall", "kind": "change",
           "threshold": {"changeThreshold": {"relative": 0.005, "direction": "LOWER_IS_BETTER"}},
           "value": 0.25, "candidate": 1.5, "baseline": 1.25, "relative_change": 0.2}
LINEAGE = {"examples": {"uri": "/x/examples", "fingerprint": "fp-examples"},
           "documents": {"uri": "/x/documents", "fingerprint": "fp-documents"},
           "tokenizer": {"uri": "/x/tokenizer", "fingerprint": "fp-tokenizer"}}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    """Three different model artifacts."""
    root = tmp_path_factory.mktemp("push")
    for seed in (1, 2, 3):
        lm.write_bigram_model(root / f"model-{seed}", seed=seed, sequence_length=16)
    return [root / f"model-{seed}" for seed in (1, 2, 3)]


def _digest(model: Path) -> str:
    return serving_dir.saved_model_digest(str(model / "saved_model"))


NOT_COMPARED = "not compared"


def _blessing(tmp_path: Path, model: Path, blessed: bool, name: str,
              against=NOT_COMPARED) -> Path:
    """A blessing; `against` is the `serving_dir.Version` evaluate compared the model with,
    None for nothing in service, or NOT_COMPARED (a verdict that does not depend on it)."""
    directory = tmp_path / f"blessing-{name}"
    directory.mkdir()
    compared = against != NOT_COMPARED
    baseline = ({"uri": against.path, "fingerprint": "fp-base", "version": against.number,
                 "model_sha256": against.digest(), "run_id": against.card.get("run_id")}
                if compared and against is not None else None)
    (directory / "blessing.json").write_text(json.dumps({
        "blessed": blessed, "failures": [] if blessed else [FAILURE], "ignored_failures": [],
        "baseline": baseline, "metrics": {"perplexity": 4.5, "bits_per_byte": 1.25},
        "slices": {"domain=a": {"perplexity": 4.0}}, "comparison": None,
        "candidate": {"uri": str(model), "fingerprint": "fp", "saved_model_sha256": _digest(model)},
        "lineage": LINEAGE, "evaluation": {"max_perplexity": 10.0}, "run_id": f"eval-{name}",
        **({"compared_with_service": True} if compared else {})}))
    return directory


def _push(tmp_path: Path, model: Path, blessed: bool, serving: Path, keep: int = 5,
          run_id: str = "run-1", blessing: Path | None = None, against=NOT_COMPARED,
          card_paths: str = "relative") -> tuple[dict, Path]:
    out = tmp_path / f"pushed-{run_id}"
    out.mkdir()
    blessing = blessing or _blessing(tmp_path, model, blessed, run_id, against)
    inputs = {"model": lm.artifact("Model", model, f"fp-{run_id}"),
              "blessing": lm.artifact("ModelBlessing", blessing, f"fp-blessing-{run_id}")}
    push.run(inputs, {"pushed": str(out)}, Runtime(run_id=run_id, root=str(tmp_path)),
             push=PushConfig(serving_dir=str(serving), keep_versions=keep,
                             card_paths=card_paths, infra_validation=False))
    return json.loads((out / "push.json").read_text()), out


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_blessed_models_become_numbered_versions_and_old_ones_are_pruned(tmp_path, models):
    serving = tmp_path / "serving"
    records = [_push(tmp_path, model, True, serving, keep=2, run_id=f"run-{i}",
                     against=serving_dir.latest(str(serving)))[0]
               for i, model in enumerate(models, start=1)]
    assert [r["version"] for r in records] == [1, 2, 3]
    assert [r["replaced"] for r in records] == [None, 1, 2]
    assert [r["pruned"] for r in records] == [[], [], [1]]
    assert sorted(os.listdir(serving)) == ["2", "3"]
    latest = serving / "3"
    assert records[2]["uri"] == str(latest) and records[2]["pushed"] is True
    card = json.loads((latest / "model_card.json").read_text())
    assert card["version"] == 3 and card["run_id"] == "run-3"
    assert card["model"] == {"uri": str(models[2]), "fingerprint": "fp-run-3",
                             "saved_model_sha256": _digest(models[2])}
    assert card["replaces"] == {"version": 2, "uri": str(serving / "2"),
                                "saved_model_sha256": _digest(models[1]), "run_id": "run-2"}
    assert card["data"] == LINEAGE
    assert card["lineage"] == {"model": "fp-run-3", "blessing": "fp-blessing-run-3",
                               "examples": "fp-examples", "documents": "fp-documents",
                               "tokenizer": "fp-tokenizer", "evaluate_run_id": "eval-run-3",
                               "push_run_id": "run-3"}
    assert card["metrics"] == {"perplexity": 4.5, "bits_per_byte": 1.25}
    assert card["slices"] == {"domain=a": {"perplexity": 4.0}}
    assert card["config"]["evaluation"] == {"max_perplexity": 10.0}
    pushed_config = card["config"]["push"]
    assert {key: pushed_config[key] for key in (
        "serving_dir", "keep_versions", "variant", "card_paths", "infra_validation",
        "infra_validation_timeout")} == {"serving_dir": str(serving), "keep_versions": 2,
                                         "variant": "float", "card_paths": "relative",
                                         "infra_validation": False,
                                         "infra_validation_timeout": 120.0}
    assert card["variant"] == "float"
    assert card["training"] == {"seed": 3, "sharpness": 2.0}
    pushed_files = _tree(latest)
    del pushed_files["model_card.json"]
    assert pushed_files == _tree(models[2] / "saved_model")
    assert serving_dir.saved_model_digest(str(latest)) == _digest(models[2])
    out = tmp_path / "pushed-run-3"
    assert push.summary({"pushed": lm.artifact("PushedModel", out, "fp")}) == {
        "pushed_model": str(latest)}


def test_a_push_removes_what_killed_pushes_left_an_hour_ago(tmp_path, models):
    serving = tmp_path / "serving"
    _push(tmp_path, models[0], True, serving, run_id="run-1")
    stale, fresh = serving / ".2.tmp-0123abcd", serving / ".2.tmp-89abcdef"
    half_deleted, foreign = serving / ".1.deleting-00000000", serving / ".2.tmp-notours"
    for directory in (stale, fresh, half_deleted, foreign):
        directory.mkdir()
        (directory / "saved_model.pb").write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    for directory in (stale, half_deleted, foreign):
        os.utime(directory, (hours_ago, hours_ago))
    _push(tmp_path, models[1], True, serving, run_id="run-2")
    assert sorted(os.listdir(serving)) == [".2.tmp-89abcdef", ".2.tmp-notours", "1", "2"]


def test_the_model_in_service_is_not_pushed_twice(tmp_path, models):
    serving = tmp_path / "serving"
    _push(tmp_path, models[0], True, serving, run_id="first")
    record, out = _push(tmp_path, models[0], True, serving, run_id="again")
    assert record == {"pushed": False, "version": 1, "uri": str(serving / "1"), "pruned": [],
                      "replaced": None, "reason": "already in service",
                      "infra_validation": None}
    assert os.listdir(serving) == ["1"]
    assert push.summary({"pushed": lm.artifact("PushedModel", out, "fp")}) == {
        "pushed_model": str(serving / "1")}


def test_not_blessed_leaves_the_serving_directory_untouched(tmp_path, models):
    serving = tmp_path / "serving"
    _push(tmp_path, models[0], True, serving, run_id="first")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
              for p in serving.rglob("*")}
    record, out = _push(tmp_path, models[1], False, serving, run_id="second")
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
             for p in serving.rglob("*")}
    assert after == before
    assert record["pushed"] is False and record["version"] is None and record["uri"] is None
    assert record["reason"] == (
        "not blessed: bits_per_byte on overall: candidate 1.5, baseline 1.25, relative change "
        "+20.0000%; may not worsen by more than relative 0.5000% (lower is better)")
    assert push.summary({"pushed": lm.artifact("PushedModel", out, "fp")}) == {"pushed_model": None}


def test_not_blessed_does_not_create_a_serving_directory(tmp_path, models):
    serving = tmp_path / "serving"
    record, _ = _push(tmp_path, models[0], False, serving)
    assert record["pushed"] is False and not serving.exists()


def test_a_blessing_for_another_model_is_refused(tmp_path, models):
    serving = tmp_path / "serving"
    other = _blessing(tmp_path, models[1], True, "other")
    with pytest.raises(UsageError, match="the blessing is for another model"):
        _push(tmp_path, models[0], True, serving, blessing=other)
    assert not serving.exists()


def test_unreadable_blessing_is_a_usage_error(tmp_path, models):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "blessing.json").write_text('{"blessed": "yes"}')
    (tmp_path / "out").mkdir()
    inputs = {"model": lm.artifact("Model", models[0], "fp"),
              "blessing": lm.artifact("ModelBlessing", bad, "fp-b")}
    with pytest.raises(UsageError, match="boolean 'blessed'"):
        push.run(inputs, {"pushed": str(tmp_path / "out")}, Runtime(run_id="r", root=str(tmp_path)),
                 push=PushConfig(serving_dir=str(tmp_path / "serving")))
    assert not (tmp_path / "serving").exists()


# --- what is in service must be what the blessing was judged against (issue 21, break 1) ---

@pytest.mark.parametrize("judged", ["nothing in service", "version 1", "version 1 replaced"])
def test_a_blessing_judged_against_what_is_no_longer_in_service_is_refused(tmp_path, models,
                                                                           judged):
    serving = tmp_path / "serving"
    against = None
    if judged != "nothing in service":
        _push(tmp_path, models[0], True, serving, run_id="first", against=None)
        against = serving_dir.latest(str(serving))
    stale = _blessing(tmp_path, models[2], True, "stale", against)
    if judged == "version 1 replaced":  # by hand, under the same number
        shutil.rmtree(serving / "1")
        shutil.copytree(models[1] / "saved_model", serving / "1")
    else:  # another run pushes after evaluate judged, before this push
        _push(tmp_path, models[1], True, serving, run_id="other",
              against=serving_dir.latest(str(serving)))
    now = serving_dir.latest(str(serving))
    before = _tree(serving)
    record, out = _push(tmp_path, models[2], True, serving, run_id="late", blessing=stale)
    then = ("with nothing in service" if against is None else
            f"against version 1 (SavedModel {_digest(models[0])[:12]})")
    by = "" if judged == "version 1 replaced" else " pushed by run other"
    assert record == {"pushed": False, "version": None, "uri": None, "pruned": [],
                      "replaced": None, "infra_validation": None, "reason": (
        f"refused: evaluate judged this model {then}, and version {now.number} (SavedModel "
        f"{_digest(models[1])[:12]}){by} is in service now; a new run judges it against "
        f"version {now.number}")}
    assert _tree(serving) == before
    assert push.summary({"pushed": lm.artifact("PushedModel", out, "fp")}) == {"pushed_model": None}


def test_a_blessing_judged_against_a_version_since_removed_is_refused(tmp_path, models):
    serving = tmp_path / "serving"
    _push(tmp_path, models[0], True, serving, run_id="first", against=None)
    stale = _blessing(tmp_path, models[1], True, "stale", serving_dir.latest(str(serving)))
    shutil.rmtree(serving / "1")  # rolled back by hand: nothing in service
    record, _ = _push(tmp_path, models[1], True, serving, run_id="late", blessing=stale)
    assert record["pushed"] is False and record["reason"] == (
        f"refused: evaluate judged this model against version 1 (SavedModel "
        f"{_digest(models[0])[:12]}), and nothing is in service now; a new run judges it again")
    assert os.listdir(serving) == []


# --- pruning and leftovers never follow a link out of the serving directory ---

def test_pruning_a_version_linked_in_from_elsewhere_removes_only_the_link(tmp_path, models):
    serving, elsewhere = tmp_path / "serving", tmp_path / "elsewhere"
    shutil.copytree(models[0] / "saved_model", elsewhere)
    serving.mkdir()
    (serving / "1").symlink_to(elsewhere, target_is_directory=True)
    record, _ = _push(tmp_path, models[1], True, serving, keep=1, run_id="next",
                      against=serving_dir.latest(str(serving)))
    assert record["pushed"] is True and record["pruned"] == [1]
    assert sorted(os.listdir(serving)) == ["2"]  # no `.1.deleting-*` link left behind
    assert _tree(elsewhere) == _tree(models[0] / "saved_model")


def test_a_push_removes_links_and_card_copies_that_killed_pushes_left(tmp_path, models):
    serving, elsewhere = tmp_path / "serving", tmp_path / "elsewhere"
    _push(tmp_path, models[0], True, serving, run_id="run-1")
    shutil.copytree(models[0] / "saved_model", elsewhere)
    link, card = serving / ".1.deleting-0123abcd", serving / ".1.card-89abcdef"
    link.symlink_to(elsewhere, target_is_directory=True)
    card.write_text("{}")
    hours_ago = time.time() - 2 * 3600
    for entry in (link, card):
        os.utime(entry, (hours_ago, hours_ago), follow_symlinks=False)
    _push(tmp_path, models[1], True, serving, run_id="run-2")
    assert sorted(os.listdir(serving)) == ["1", "2"]
    assert _tree(elsewhere) == _tree(models[0] / "saved_model")


# --- push.card_paths ---

@pytest.mark.parametrize("mode", ["relative", "absolute", "redacted"])
def test_the_card_shows_paths_as_push_card_paths_says(tmp_path, models, monkeypatch, mode):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    model, documents = work / "root" / "model", work / "root" / "ingest" / "k" / "documents"
    shutil.copytree(models[0], model)
    (model / "train_summary.json").write_text(json.dumps(
        {"seed": 1, "peak_flops": {"device": "/device:CPU:0"},
         "tokenizer": {"uri": str(work / "root" / "tokenizer")}}))
    documents.mkdir(parents=True)
    patterns = f"{work / 'corpus' / '*.jsonl'},{elsewhere / 'more.jsonl'}"
    (documents.parent / "lmpipe_execution.json").write_text(json.dumps({"inputs": {"raw": {
        "uri": patterns, "fingerprint": "fp-raw",
        "properties": {"files": [str(work / "corpus" / "a.jsonl"), str(elsewhere / "more.jsonl")],
                       "sizes": [1, 2], "bytes": 3}}}}))
    elsewhere.mkdir()
    blessing = _blessing(tmp_path, model, True, "paths")
    verdict = json.loads((blessing / "blessing.json").read_text())
    verdict["lineage"] = {"examples": {"uri": "gs://bucket/examples", "fingerprint": "fp-e"},
                          "documents": {"uri": str(documents), "fingerprint": "fp-d"}}
    (blessing / "blessing.json").write_text(json.dumps(verdict))
    monkeypatch.chdir(work)
    record, _ = _push(tmp_path, model, True, work / "serving", run_id="paths",
                      blessing=blessing, card_paths=mode)
    card = serving_dir.read_card(record["uri"])

    def shown(path: str) -> str:
        if mode == "redacted":
            return push.REDACTED
        if mode == "relative" and path.startswith(f"{work}{os.sep}"):
            return os.path.relpath(path, work)
        return path

    assert card["model"] == {"uri": shown(str(model)), "fingerprint": "fp-paths",
                             "saved_model_sha256": _digest(model)}
    assert card["data"] == {"examples": {"uri": shown("gs://bucket/examples"), "fingerprint": "fp-e"},
                            "documents": {"uri": shown(str(documents)), "fingerprint": "fp-d"}}
    assert card["data_sources"]["raw"] == {
        "uri": ",".join(shown(p) for p in patterns.split(",")), "fingerprint": "fp-raw",
        "files": [shown(str(work / "corpus" / "a.jsonl")), shown(str(elsewhere / "more.jsonl"))],
        "sizes": [1, 2], "bytes": 3}
    assert card["config"]["push"]["serving_dir"] == shown(str(work / "serving"))
    assert card["training"] == {"seed": 1, "peak_flops": {"device": "/device:CPU:0"},
                                "tokenizer": {"uri": shown(str(work / "root" / "tokenizer"))}}
    assert record["uri"] == str(work / "serving" / "1")  # the record itself stays exact
