"""push (TFX Pusher): a blessed model -> a new version in the serving directory.

Only a model whose `blessing.json` says blessed, and names this very model (by SavedModel
digest), is pushed: its SavedModel (`push.variant`: `float`, the model artifact's
`saved_model/`, or `quantized`, its int8 `saved_model_int8/`) is copied to
`<push.serving_dir>/<N>/` (TF Serving layout, N one more than the highest number there)
with a `model_card.json`, and the version appears by one rename (a push that loses a
race for N to another push looks again and takes the next number). Then all but the newest
`push.keep_versions` versions are removed, and so are the hidden staging copies of pushes
killed outright more than an hour ago. A model already in service as the latest
version is not copied again. A model that is not blessed leaves the serving directory
untouched and the run succeeds; `pushed/push.json` says why.

Outputs:
    pushed/push.json   {"pushed", "version", "uri", "reason", "pruned", "replaced"}

The model card: version, variant, run id, time; the model (URI, artifact fingerprint,
SavedModel digest); the version it replaced; the data it came from (examples, documents,
tokenizer: URIs and fingerprints) and what the documents came from (the raw files with
their fingerprint, documents and bytes per split); metrics overall and per slice; the
comparison with the baseline and any failures ignored on small slices; the config
(training hyperparameters, the evaluation gate, push); the train summary; lineage ids.
"""

from __future__ import annotations

import json
import os
import time

from pipeline.core.artifacts import Artifact, write_json_atomic
from pipeline.core.component import ComponentSpec
from pipeline.core.errors import UsageError

SPEC = ComponentSpec(
    name="push",
    module="components.push",
    inputs={"model": "Model", "blessing": "ModelBlessing"},
    outputs={"pushed": "PushedModel"},
    config=("push",),
)

PUSH_FILE = "push.json"
# Tries to claim a version number when other pushes into the same serving directory race.
PUBLISH_ATTEMPTS = 20


def run(inputs, outputs, runtime, push):
    """Push the model if it is blessed.

    Args:
        inputs: `model` (with the SavedModel of `push.variant`) and `blessing` (with
            `blessing.json`).
        outputs: the `pushed` directory.
        runtime: the run's `Runtime` (run id for the model card).
        push: the `PushConfig` section.

    Returns:
        Output properties: whether it pushed, and where.
    """
    from pipeline.core.contracts import serving_dir
    from pipeline.core.contracts.blessing import read_blessing

    verdict = read_blessing(inputs["blessing"].uri)
    if verdict["blessed"] is True:
        record = _push(inputs, verdict, runtime, push)
        runtime.log(f"[push] {record['reason']}: version {record['version']} at {record['uri']}")
    else:
        reason = "not blessed: " + _failure_text(verdict.get("failures", []))
        record = {"pushed": False, "version": None, "uri": None, "reason": reason, "pruned": [],
                  "replaced": None}
        latest = serving_dir.latest(push.serving_dir)
        runtime.log(f"[push] {reason}; serving stays at "
                    f"{f'version {latest.number}' if latest else 'nothing'}")
    write_json_atomic(os.path.join(outputs["pushed"], PUSH_FILE), record)
    return {"pushed": {k: record[k] for k in ("pushed", "version", "uri")}}


def _push(inputs: dict, verdict: dict, runtime, push) -> dict:
    from pipeline.core.contracts import serving_dir
    from pipeline.core.contracts.model import VARIANT_DIRS, is_saved_model

    model = inputs["model"]
    saved_model = model.path(VARIANT_DIRS[push.variant])
    if not is_saved_model(saved_model):
        raise UsageError(f"{model.uri}: no SavedModel at {VARIANT_DIRS[push.variant]}/ "
                         f"(push.variant {push.variant})")
    digest = serving_dir.saved_model_digest(saved_model)
    blessed = (verdict.get("candidate") or {}).get("saved_model_sha256")
    if blessed != digest:
        raise UsageError(f"{inputs['blessing'].uri}: the blessing is for another model "
                         f"(SavedModel {blessed}, this model {digest})")
    target = os.path.abspath(push.serving_dir)
    for _ in range(PUBLISH_ATTEMPTS):
        latest = serving_dir.latest(target)
        if latest is not None and latest.digest() == digest:
            return {"pushed": False, "version": latest.number, "uri": latest.path, "pruned": [],
                    "replaced": None, "reason": "already in service"}
        number = serving_dir.next_version(target)
        card = model_card(model, inputs["blessing"], verdict, runtime, push, number, digest, latest)
        try:
            uri = serving_dir.publish(saved_model, target, number, card)
            break
        except serving_dir.VersionTaken:
            # Another push took the number between our look and our rename: look again, so
            # that the card's version and the version it replaces are the ones now there.
            runtime.log(f"[push] version {number} was taken by another push; retrying")
    else:
        raise RuntimeError(f"{target}: other pushes took {PUBLISH_ATTEMPTS} version numbers "
                           "in a row; nothing was pushed")
    pruned = serving_dir.prune(target, push.keep_versions)
    for name in serving_dir.remove_leftovers(target):
        runtime.log(f"[push] removed {name}, left by a push or prune that was killed")
    against = (f"compared with version {verdict['baseline'].get('version')}"
               if verdict.get("baseline") else "no model in service")
    return {"pushed": True, "version": number, "uri": uri, "pruned": pruned,
            "replaced": latest.number if latest else None, "reason": f"blessed ({against})"}


def model_card(model: Artifact, blessing: Artifact, verdict: dict, runtime, push, number: int,
               digest: str, replaced) -> dict:
    """The JSON card pushed beside the SavedModel.

    Args:
        model: the model artifact.
        blessing: the blessing artifact.
        verdict: its content (evaluate also recorded the lineage and config there).
        runtime: the run's `Runtime`.
        push: the `PushConfig` section.
        number: the new version.
        digest: the SavedModel's digest.
        replaced: the version in service until now (a `serving_dir.Version`), or None.

    Returns:
        The card.
    """
    from pipeline.core.configio import to_dict
    from pipeline.core.contracts.model import SUMMARY_FILE

    training = _read_optional_json(model.path(SUMMARY_FILE))
    lineage = verdict.get("lineage") or {}
    return {
        "version": number,
        "variant": push.variant,
        "run_id": runtime.run_id,
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"uri": model.uri, "fingerprint": model.fingerprint,
                  "saved_model_sha256": digest},
        "replaces": None if replaced is None else {
            "version": replaced.number, "uri": replaced.path,
            "saved_model_sha256": replaced.digest(), "run_id": replaced.card.get("run_id")},
        "data": lineage,
        "data_sources": data_sources(lineage),
        "metrics": verdict.get("metrics", {}),
        "slices": verdict.get("slices", {}),
        "baseline": verdict.get("baseline"),
        "comparison": verdict.get("comparison"),
        "ignored_failures": verdict.get("ignored_failures", []),
        "config": {"training": (training or {}).get("hyperparameters"),
                   "evaluation": verdict.get("evaluation"), "push": to_dict(push)},
        "training": training,
        "lineage": {"model": model.fingerprint, "blessing": blessing.fingerprint,
                    **{name: (entry or {}).get("fingerprint") for name, entry in lineage.items()},
                    "evaluate_run_id": verdict.get("run_id"), "push_run_id": runtime.run_id},
    }


def data_sources(lineage: dict) -> dict:
    """What the documents were made from: the raw files (as ingest's execution record
    names them, with their fingerprint) and documents and bytes per split.

    Args:
        lineage: the data lineage evaluate recorded (`documents`: its URI and fingerprint).

    Returns:
        {"raw": the raw files' patterns (`uri`), fingerprint, `files`, `sizes` and `bytes`,
        or None; "splits": split -> {documents, bytes}, or None}.
    """
    from pipeline.core.artifacts import MARKER
    from pipeline.core.contracts.documents import STATS_FILE

    uri = (lineage.get("documents") or {}).get("uri")
    if not uri:
        return {"raw": None, "splits": None}
    execution = _read_optional_json(os.path.join(os.path.dirname(uri), MARKER)) or {}
    stats = _read_optional_json(os.path.join(uri, STATS_FILE)) or {}
    splits = {name: {"documents": split.get("documents"), "bytes": split.get("bytes")}
              for name, split in (stats.get("splits") or {}).items() if isinstance(split, dict)}
    raw = (execution.get("inputs") or {}).get("raw")
    if raw:
        raw = {"uri": raw.get("uri"), "fingerprint": raw.get("fingerprint"),
               **(raw.get("properties") or {})}
    return {"raw": raw or None, "splits": splits or None}


def _read_optional_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _failure_text(failures: list[dict]) -> str:
    from pipeline.core.contracts.blessing import threshold_text

    if not failures:
        return "no failed threshold recorded"
    texts = []
    for f in failures:
        numbers = f"candidate {f.get('candidate', f.get('value'))}"
        if f.get("kind") == "change":
            relative = f.get("relative_change")
            numbers += (f", baseline {f.get('baseline')}"
                        + (f", relative change {relative:+.4%}" if relative is not None else ""))
        texts.append(f"{f.get('metric')} on {f.get('slice')}: {numbers}; "
                     f"{threshold_text(f.get('threshold'))}")
    return "; ".join(texts)


def summary(outputs: dict) -> dict:
    """The URI of the version serving this run's model for latest_run.json, or None."""
    pushed = outputs.get("pushed")
    record = _read_optional_json(pushed.path(PUSH_FILE)) if pushed else None
    return {"pushed_model": (record or {}).get("uri")}
