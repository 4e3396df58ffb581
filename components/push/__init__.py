"""push (TFX Pusher): a blessed model -> a new version in the serving directory.

Only a model whose `blessing.json` says blessed, and names this very model (by SavedModel
digest), is pushed: its SavedModel (`push.variant`: `float`, the model artifact's
`saved_model/`, or `quantized`, its int8 `saved_model_int8/`) is copied to
`<push.serving_dir>/<N>/` (TF Serving layout, N one more than the highest number there)
with a `model_card.json`, and the version appears by one rename. Before that, unless
`push.infra_validation` is off, the SavedModel is served by a fresh `lmpipe serve`
process and must answer a canary request per signature a client calls (`infra.py`,
TFX's InfraValidator); a model that does not is not pushed, like an unblessed one, and
`push.json` says why. Then all but the newest
`push.keep_versions` versions are removed, and so are the hidden staging copies of pushes
killed outright more than an hour ago. A model already in service as the latest
version is not copied again. A model that is not blessed leaves the serving directory
untouched and the run succeeds; `pushed/push.json` says why.

A push is a compare-and-swap under a lock on the serving directory itself (shared by
every pipeline root that pushes there, `serving_dir.push_lock`): a language model's blessing
was judged against the model then in service (`baseline`, or nothing), and it is
published only if the newest version is still that one. If another run pushed meanwhile,
the push is refused like an unblessed model (the run succeeds, serving is untouched,
`push.json` names both versions); the next run's evaluate judges the model against the
new version in service (evaluate's cache key covers it).

A push killed between its rename and its record leaves a version whose card names a run
that recorded no push of it; the rerun that finds its model there completes that push:
it rewrites the card in its own name (`completes_push_of_run` names the killed run), so
the card and `lmpipe lineage` name the same run.

Outputs:
    pushed/push.json   {"pushed", "version", "uri", "reason", "pruned", "replaced",
                        "infra_validation": None (not run) or `infra.validate`'s result}

The model card: version, variant, run id, time; the model (URI, artifact fingerprint,
SavedModel digest); the version it replaced; the data it came from (examples, documents,
tokenizer: URIs and fingerprints) and what the documents came from (the raw files with
their fingerprint, documents and bytes per split); metrics overall and per slice; the
comparison with the baseline and any failures ignored on small slices; the config
(training hyperparameters, the evaluation gate, push); the train summary; lineage ids.
Its paths are shown as `push.card_paths` says (relative to the working directory by
default, absolute, or redacted).
"""

from __future__ import annotations

import json
import os
import re
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
# Tries to claim a version number when writers that do not take the serving directory's
# lock (an older lmpipe, a copy by hand) take numbers under a push.
PUBLISH_ATTEMPTS = 20
# What `push.card_paths: redacted` leaves of a path.
REDACTED = "<redacted>"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S")
# The run store of a pipeline root (`pipeline/core/metadata.py`).
STORE_FILE = "metadata.sqlite"


def run(inputs, outputs, runtime, push):
    """Push the model if it is blessed and what is in service is what it was judged against.

    Args:
        inputs: `model` (with the SavedModel of `push.variant`) and `blessing` (with
            `blessing.json`).
        outputs: the `pushed` directory.
        runtime: the run's `Runtime` (run id for the model card).
        push: the `PushConfig` section.

    Returns:
        Output properties: whether it pushed, where, and why (or why not).
    """
    from pipeline.core.contracts.blessing import read_blessing

    verdict = read_blessing(inputs["blessing"].uri)
    if verdict["blessed"] is True:
        record = _push(inputs, verdict, runtime, push)
    else:
        record = _not_pushed("not blessed: " + _failure_text(verdict.get("failures", [])))
    runtime.log(_log_line(record, push.serving_dir))
    if record["pushed"] and push.vertex.enabled:
        record["vertex"] = _deploy_to_vertex(record["uri"], runtime, push)
    write_json_atomic(os.path.join(outputs["pushed"], PUSH_FILE), record)
    return {"pushed": {k: record[k] for k in ("pushed", "version", "uri", "reason")}}


def _deploy_to_vertex(version_dir: str, runtime, push) -> dict:
    """Deploy the version just published to the Vertex AI endpoint (`push.vertex`); a cloud
    failure fails the step, so push.json never says a model is pushed whose deploy failed."""
    from components.push import vertex
    from pipeline.core.contracts import serving_dir

    card = serving_dir.read_card(version_dir)
    return vertex.deploy(version_dir, card, push.vertex, runtime.log)


def _push(inputs: dict, verdict: dict, runtime, push) -> dict:
    """Publish under the serving directory's lock, then prune."""
    from pipeline.core.contracts import serving_dir

    saved_model, digest = _blessed_saved_model(inputs, verdict, push)
    # Before the lock: the check takes seconds, and other pushes need not wait for it.
    served = _infra_validation(saved_model, runtime, push)
    if served is not None and not served["passed"]:
        return _not_pushed(f"not servable: {served['problem']}", served)
    target = os.path.abspath(push.serving_dir)

    def waiting() -> None:
        runtime.log(f"[push] another push into {target} holds its lock; waiting for it")

    with serving_dir.push_lock(target, on_wait=waiting):
        record = _publish(inputs, verdict, runtime, push, saved_model, digest)
        record["infra_validation"] = served
        if record["pushed"]:
            record["pruned"] = serving_dir.prune(target, push.keep_versions)
            for name in serving_dir.remove_leftovers(target):
                runtime.log(f"[push] removed {name}, left by a push or prune that was killed")
    return record


def _infra_validation(saved_model: str, runtime, push) -> dict | None:
    """`infra.validate`'s result for the SavedModel, or None when `push.infra_validation`
    is off."""
    from components.push import infra

    if not push.infra_validation:
        return None
    served = infra.validate(saved_model, push.infra_validation_timeout)
    if served["passed"]:
        runtime.log(f"[push] infra validation: a fresh server answered "
                    f"{', '.join(served['checked'])} in {served['seconds']} s")
    return served


def _blessed_saved_model(inputs: dict, verdict: dict, push) -> tuple[str, str]:
    """The SavedModel to push and its digest, checked against the blessing.

    Raises:
        UsageError: the model has no SavedModel of `push.variant`, or the blessing is for
            another model.
    """
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
    return saved_model, digest


def _publish(inputs: dict, verdict: dict, runtime, push, saved_model: str, digest: str) -> dict:
    """Holding the lock: publish a new version if what is in service is what the model
    was judged against; else say why not."""
    from pipeline.core.contracts import serving_dir

    target = os.path.abspath(push.serving_dir)
    for _ in range(PUBLISH_ATTEMPTS):
        latest = serving_dir.latest(target)
        if latest is not None and latest.digest() == digest:
            return _in_service(inputs, verdict, runtime, push, latest, digest)
        conflict = _moved_on(verdict, latest)
        if conflict is not None:
            return _not_pushed(conflict)
        number = serving_dir.next_version(target)
        card = model_card(inputs["model"], inputs["blessing"], verdict, runtime, push, number,
                          digest, latest)
        try:
            uri = serving_dir.publish(saved_model, target, number, card)
        except serving_dir.VersionTaken:
            # A writer that does not take the lock took the number between our look and our
            # rename: look again, and judge again what is in service now.
            runtime.log(f"[push] version {number} was taken by another writer; looking again")
            continue
        return {"pushed": True, "version": number, "uri": uri, "pruned": [],
                "replaced": latest.number if latest else None,
                "reason": f"blessed ({_against(verdict)})"}
    raise RuntimeError(f"{target}: other writers took {PUBLISH_ATTEMPTS} version numbers "
                       "in a row; nothing was pushed")


def _moved_on(verdict: dict, latest) -> str | None:
    """Why the verdict no longer holds for the newest version `latest` (None: nothing in
    service), or None when it still does (or does not depend on what is in service)."""
    from pipeline.core.contracts.blessing import judged_against

    compared, judged = judged_against(verdict)
    now = None if latest is None else (latest.number, latest.digest())
    if not compared or judged == now:
        return None
    then = f"against {_version_text(*judged)}" if judged else "with nothing in service"
    if latest is None:
        return (f"refused: evaluate judged this model {then}, and nothing is in service now; "
                "a new run judges it again")
    pusher = latest.card.get("run_id")
    return (f"refused: evaluate judged this model {then}, and "
            f"{_version_text(*now)}{f' pushed by run {pusher}' if pusher else ''} is in "
            f"service now; a new run judges it against version {latest.number}")


def _version_text(number, digest) -> str:
    return f"version {number} (SavedModel {str(digest)[:12]})"


def _in_service(inputs: dict, verdict: dict, runtime, push, latest, digest: str) -> dict:
    """The model is the newest version already: nothing to copy. If a run published it
    and was killed before recording its push, this run completes that push in its own
    name (card and record then agree)."""
    from pipeline.core.contracts import serving_dir

    killed = latest.card.get("run_id")
    if not _unrecorded_push(runtime, latest):
        return {"pushed": False, "version": latest.number, "uri": latest.path, "pruned": [],
                "replaced": None, "reason": "already in service"}
    card = model_card(inputs["model"], inputs["blessing"], verdict, runtime, push,
                      latest.number, digest, None)
    card.update(replaces=show_paths(latest.card.get("replaces"), push.card_paths),
                completes_push_of_run=killed,
                pushed_at=latest.card.get("pushed_at") or card["pushed_at"])
    serving_dir.write_card(latest.path, card)
    return {"pushed": True, "version": latest.number, "uri": latest.path, "pruned": [],
            "replaced": (latest.card.get("replaces") or {}).get("version"),
            "reason": f"blessed ({_against(verdict)}); run {killed} published it and was "
                      "stopped before recording its push"}


def _unrecorded_push(runtime, version) -> bool:
    """Whether `version` was published by another run of this pipeline root that never
    recorded a push of it (killed between the rename and the record), while this run is
    one the root's store records (the local runner, not a step run alone).

    The question is the one `lmpipe lineage` asks of the store (`writer_of`), so the
    answer keeps the card and the lineage in agreement.
    """
    from pipeline.core.metadata import MetadataStore

    pusher = version.card.get("run_id")
    path = os.path.join(runtime.root, STORE_FILE)
    if not pusher or pusher == runtime.run_id or not os.path.isfile(path):
        return False
    store = MetadataStore(path)
    try:
        if not store.executions(pusher) or not store.executions(runtime.run_id):
            return False  # the card's run or this one is not of this root's runner
        writer = store.writer_of(os.path.abspath(version.path), pusher)
        return writer is None or writer["run_id"] != pusher
    finally:
        store.close()


def _not_pushed(reason: str, served: dict | None = None) -> dict:
    return {"pushed": False, "version": None, "uri": None, "reason": reason, "pruned": [],
            "replaced": None, "infra_validation": served}


def _against(verdict: dict) -> str:
    baseline = verdict.get("baseline")
    return f"compared with version {baseline.get('version')}" if baseline else "no model in service"


def _log_line(record: dict, serving: str) -> str:
    from pipeline.core.contracts import serving_dir

    if record["version"] is not None:
        return f"[push] {record['reason']}: version {record['version']} at {record['uri']}"
    latest = serving_dir.latest(serving)
    return (f"[push] {record['reason']}; serving stays at "
            f"{f'version {latest.number}' if latest else 'nothing'}")


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
    return show_paths({
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
    }, push.card_paths)


def show_paths(value, mode: str, cwd: str | None = None):
    """A model card (or any JSON value) with its paths shown as `push.card_paths` says.

    A path is a URL (`scheme://...`) or an absolute local path whose top directory exists
    on this machine (so a device name such as `/device:CPU:0` is not one); a string of
    comma-separated paths (ingest's raw patterns) is shown path by path.

    Args:
        value: the card.
        mode: `absolute` (as they are), `relative` (those below `cwd` relative to it, the
            others as they are) or `redacted` (each replaced by `REDACTED`).
        cwd: the working directory (default: the process's).

    Returns:
        A new value; `value` is not changed.
    """
    if mode == "absolute":
        return value
    base = os.path.join(os.path.abspath(cwd or os.getcwd()), "")

    def one(path: str) -> str:
        if mode == "redacted":
            return REDACTED
        if "://" in path or not os.path.join(path, "").startswith(base):
            return path
        return os.path.relpath(path, base)

    def show(item):
        if isinstance(item, dict):
            return {key: show(entry) for key, entry in item.items()}
        if isinstance(item, list):
            return [show(entry) for entry in item]
        if isinstance(item, str) and all(_is_path(part) for part in item.split(",")):
            return ",".join(one(part) for part in item.split(","))
        return item

    return show(value)


def _is_path(text: str) -> bool:
    if _URL.match(text):
        return True
    parts = text.split(os.sep)
    return os.path.isabs(text) and os.path.isdir(os.sep + parts[1])


def data_sources(lineage: dict) -> dict:
    """What the documents were made from: the raw files (as ingest's execution record
    names them, with their fingerprint) and documents and bytes per split.

    Args:
        lineage: the data lineage evaluate recorded (`documents`: its URI and fingerprint).

    Returns:
        {"raw": the raw files' patterns (`uri`), fingerprint, `files`, `sizes` and `bytes`,
        or None; "splits": split -> {documents, bytes}, or None; "spans": the data spans
        the model was trained on, or None without spans}.
    """
    from pipeline.core.artifacts import MARKER
    from pipeline.core.contracts.documents import STATS_FILE

    uri = (lineage.get("documents") or {}).get("uri")
    if not uri:
        return {"raw": None, "splits": None, "spans": None}
    execution = _read_optional_json(os.path.join(os.path.dirname(uri), MARKER)) or {}
    stats = _read_optional_json(os.path.join(uri, STATS_FILE)) or {}
    splits = {name: {"documents": split.get("documents"), "bytes": split.get("bytes")}
              for name, split in (stats.get("splits") or {}).items() if isinstance(split, dict)}
    raw = (execution.get("inputs") or {}).get("raw")
    if raw:
        raw = {"uri": raw.get("uri"), "fingerprint": raw.get("fingerprint"),
               **(raw.get("properties") or {})}
    return {"raw": raw or None, "splits": splits or None, "spans": stats.get("chosen")}


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
