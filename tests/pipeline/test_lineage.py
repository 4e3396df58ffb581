"""`lmpipe lineage`: shared upstreams, and served versions traced through their push.

The store is filled the way the local runner fills it (`record_execution` with artifacts
whose directories exist), in the shape of the real DAG: transform reads documents and the
tokenizer made from them, so the documents are reached twice.
"""

from __future__ import annotations

import json
import os

import pytest

from pipeline.core.artifacts import Artifact
from pipeline.core.errors import UsageError
from pipeline.history import format_lineage
from pipeline.core.metadata import MetadataStore
from tests.conftest import run_lmpipe

RAW = "/data/corpus/*.jsonl"


def _artifact(root, component: str, name: str, kind: str, **properties) -> Artifact:
    uri = os.path.join(root, component, f"{component}-key", name)
    os.makedirs(uri, exist_ok=True)
    return Artifact(type=kind, uri=uri, fingerprint=f"fp-{component}-{name}", properties=properties)


def _execute(store, run_id, component, started, inputs, outputs) -> None:
    store.record_execution(run_id, component, "executed", cache_key=f"key-{component}",
                           config={component: {"seed": 0}}, started=started,
                           inputs=inputs, outputs=outputs)


def _train(store, root, run_id="r1", started=1.0) -> dict:
    """ingest -> tokenizer -> transform -> train, as the real DAG wires them."""
    raw = Artifact(type="RawFiles", uri=RAW, fingerprint="fp-raw")
    made = {"documents": _artifact(root, "ingest", "documents", "Documents")}
    _execute(store, run_id, "ingest", started, {"raw": raw}, {"documents": made["documents"]})
    made["tokenizer"] = _artifact(root, "tokenizer", "tokenizer", "Tokenizer")
    _execute(store, run_id, "tokenizer", started + 1, {"documents": made["documents"]},
             {"tokenizer": made["tokenizer"]})
    made["examples"] = _artifact(root, "transform", "examples", "Examples")
    _execute(store, run_id, "transform", started + 2,
             {"documents": made["documents"], "tokenizer": made["tokenizer"]},
             {"examples": made["examples"]})
    made["model"] = _artifact(root, f"train-{run_id}", "model", "Model")
    _execute(store, run_id, "train", started + 3,
             {"examples": made["examples"], "tokenizer": made["tokenizer"]},
             {"model": made["model"]})
    return made


def _push(store, root, serving, run_id, started, model, number, baseline=None) -> Artifact:
    """evaluate (against `baseline` if any) and push of `model` to version `number`."""
    blessing = _artifact(root, f"evaluate-{run_id}", "blessing", "ModelBlessing", blessed=True)
    inputs = {"model": model, **({"baseline": baseline} if baseline else {})}
    _execute(store, run_id, "evaluate", started, inputs, {"blessing": blessing})
    version = os.path.join(serving, str(number))
    pushed = _artifact(root, f"push-{run_id}", "pushed", "PushedModel",
                       pushed=True, version=number, uri=version)
    _execute(store, run_id, "push", started + 1, {"model": model, "blessing": blessing},
             {"pushed": pushed})
    return pushed


def _serve(serving, number: int, run_id: str, model: Artifact | None) -> str:
    """A version directory as push publishes it: a SavedModel and its model card."""
    version = os.path.join(serving, str(number))
    os.makedirs(os.path.join(version, "variables"), exist_ok=True)
    with open(os.path.join(version, "saved_model.pb"), "wb") as f:
        f.write(b"graph")
    card = {"version": number, "run_id": run_id,
            "model": {"uri": model.uri, "fingerprint": model.fingerprint} if model else None}
    with open(os.path.join(version, "model_card.json"), "w", encoding="utf-8") as f:
        json.dump(card, f)
    return version


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    opened = MetadataStore(str(root / "metadata.sqlite"))
    yield opened
    opened.close()


def _annotation(lines: list[str], header: str) -> list[str]:
    """The line under each line that is exactly `header` (after indentation)."""
    return [lines[i + 1].strip() for i, line in enumerate(lines) if line.strip() == header]


def _external(lines: list[str]) -> list[str]:
    """The artifact lines annotated as external inputs."""
    return [lines[i - 1].strip() for i, line in enumerate(lines) if "external input" in line]


def test_a_shared_upstream_is_shown_above_and_only_raw_files_are_external(tmp_path, store):
    made = _train(store, str(tmp_path / "root"))
    lines = format_lineage(made["model"].uri).splitlines()
    documents, tokenizer = made["documents"].uri, made["tokenizer"].uri
    assert _annotation(lines, f"Documents {documents}") == [
        "made by ingest in run r1 at 1970-01-01 00:00:01, cache key key-ingest",
        "(made by ingest in run r1, shown above)"]
    assert _annotation(lines, f"Tokenizer {tokenizer}") == [
        "made by tokenizer in run r1 at 1970-01-01 00:00:02, cache key key-tokenizer",
        "(made by tokenizer in run r1, shown above)"]
    assert _external(lines) == [f"RawFiles {RAW}"]
    assert _annotation(lines, f"RawFiles {RAW}") == ["(external input, fingerprint fp-raw)"]
    # Each artifact's inputs are listed once: the repeated ones have no children.
    assert sum("made by ingest in run r1 at" in line for line in lines) == 1


@pytest.mark.parametrize("inside_root", [False, True])
def test_a_served_version_is_traced_through_its_push_to_ingest(tmp_path, store, inside_root):
    root = str(tmp_path / "root")
    serving = os.path.join(root if inside_root else str(tmp_path), "serving")
    made = _train(store, root)
    pushed = _push(store, root, serving, "r1", 10.0, made["model"], 1)
    version = _serve(serving, 1, "r1", None if inside_root else made["model"])
    text = format_lineage(os.path.join(version, "variables"))
    lines = text.splitlines()
    assert lines[:3] == [f"Model {version}",
                         f"  serving version 1, written by push in run r1, recorded as "
                         f"PushedModel {pushed.uri}",
                         f"  PushedModel {pushed.uri}"]
    assert lines[3].startswith("    made by push in run r1 at 1970-01-01 00:00:11")
    for component in ("evaluate", "train", "transform", "tokenizer", "ingest"):
        assert sum(f"made by {component} in run r1 at" in line for line in lines) == 1, component
    assert _external(lines) == [f"RawFiles {RAW}"]
    assert format_lineage(serving) == text  # the serving directory means its latest version


def test_a_reused_version_number_is_traced_to_the_push_its_card_names(tmp_path, store):
    """Version 1 pushed by r0, the serving directory wiped, version 1 pushed again by r1."""
    root, serving = str(tmp_path / "root"), str(tmp_path / "serving")
    old = _train(store, root, run_id="r0", started=1.0)
    _push(store, root, serving, "r0", 10.0, old["model"], 1)
    new = _train(store, root, run_id="r1", started=20.0)
    pushed = _push(store, root, serving, "r1", 30.0, new["model"], 1)
    version = _serve(serving, 1, "r1", new["model"])
    lines = [line.strip() for line in format_lineage(version).splitlines()]
    assert lines[1] == (f"serving version 1, written by push in run r1, recorded as "
                        f"PushedModel {pushed.uri}")
    assert f"Model {new['model'].uri}" in lines
    assert f"Model {old['model'].uri}" not in lines


def test_a_baseline_version_says_which_push_wrote_it(tmp_path, store):
    root, serving = str(tmp_path / "root"), str(tmp_path / "serving")
    first = _train(store, root, run_id="r1")
    pushed = _push(store, root, serving, "r1", 10.0, first["model"], 1)
    version = _serve(serving, 1, "r1", first["model"])
    second = _train(store, root, run_id="r2", started=20.0)
    baseline = Artifact(type="Model", uri=version, fingerprint="fp-baseline",
                        properties={"version": 1, "run_id": "r1"})
    _push(store, root, serving, "r2", 30.0, second["model"], 2, baseline=baseline)
    _serve(serving, 2, "r2", second["model"])
    lines = format_lineage(serving).splitlines()
    assert lines[0] == f"Model {os.path.join(serving, '2')}"
    assert _annotation(lines, f"Model {version}") == [
        f"(written by push in run r1, recorded as PushedModel {pushed.uri}; "
        f"lmpipe lineage {version} traces it)"]


def test_a_version_no_push_recorded_is_a_usage_error(tmp_path, store):
    made = _train(store, str(tmp_path / "root"))
    version = _serve(str(tmp_path / "serving"), 3, "elsewhere", made["model"])
    with pytest.raises(UsageError, match="serving version 3, but .* records no push of it"):
        format_lineage(version)
    result = run_lmpipe("lineage", version)
    assert result.returncode == 2 and "records no push of it" in result.stderr
    assert "Traceback" not in result.stderr
