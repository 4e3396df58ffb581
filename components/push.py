"""push (TFX Pusher): a blessed model -> a new version in the serving directory.

Only a model whose `blessing.json` says blessed is pushed: its SavedModel is copied to
`<push.serving_dir>/<N>/` (TF Serving layout, N one more than the highest number there),
with a `model_card.json`, and the version appears by one rename. Then all but the newest
`push.keep_versions` versions are removed. A model that is not blessed leaves the serving
directory untouched and the run succeeds; `pushed/push.json` says why.

Outputs:
    pushed/push.json   {"pushed", "version", "uri", "reason", "pruned"}
"""

from __future__ import annotations

import json
import os
import time

from pipeline.artifacts import Artifact, write_json_atomic
from pipeline.component import ComponentSpec
from pipeline.errors import UsageError

SPEC = ComponentSpec(
    name="push",
    module="components.push",
    inputs={"model": "Model", "blessing": "ModelBlessing"},
    outputs={"pushed": "PushedModel"},
    config=("push",),
)

PUSH_FILE = "push.json"


def run(inputs, outputs, runtime, push):
    """Push the model if it is blessed.

    Args:
        inputs: `model` (with `saved_model/`) and `blessing` (with `blessing.json`).
        outputs: the `pushed` directory.
        runtime: the run's `Runtime` (run id for the model card).
        push: the `PushConfig` section.

    Returns:
        Output properties: whether it pushed, and where.
    """
    from components.evaluation import serving_dir

    verdict = _read_blessing(inputs["blessing"])
    if verdict.get("blessed") is True:
        record = _push(inputs["model"], verdict, runtime, push)
        runtime.log(f"[push] pushed version {record['version']} to {record['uri']}")
    else:
        reason = "not blessed: " + _failure_text(verdict.get("failures", []))
        record = {"pushed": False, "version": None, "uri": None, "reason": reason, "pruned": []}
        latest = serving_dir.latest(push.serving_dir)
        runtime.log(f"[push] {reason}; serving stays at "
                    f"{f'version {latest.number}' if latest else 'nothing'}")
    write_json_atomic(os.path.join(outputs["pushed"], PUSH_FILE), record)
    return {"pushed": {k: record[k] for k in ("pushed", "version", "uri")}}


def _push(model: Artifact, verdict: dict, runtime, push) -> dict:
    from components.evaluation import serving_dir

    saved_model = model.path("saved_model")
    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise UsageError(f"{model.uri}: no SavedModel at saved_model/")
    target = os.path.abspath(push.serving_dir)
    number = serving_dir.next_version(target)
    card = _model_card(model, verdict, runtime, number)
    uri = serving_dir.publish(saved_model, target, number, card)
    pruned = serving_dir.prune(target, push.keep_versions)
    return {"pushed": True, "version": number, "uri": uri, "pruned": pruned,
            "reason": "blessed" + (f" (compared with version {verdict['baseline'].get('version')})"
                                   if verdict.get("baseline") else " (no model in service)")}


def _model_card(model: Artifact, verdict: dict, runtime, number: int) -> dict:
    return {
        "version": number,
        "model_fingerprint": model.fingerprint,
        "model_uri": model.uri,
        "run_id": runtime.run_id,
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": verdict.get("metrics", {}),
        "baseline": verdict.get("baseline"),
        "training": _read_optional_json(model.path("train_summary.json")),
    }


def _read_blessing(blessing: Artifact) -> dict:
    path = blessing.path("blessing.json")
    try:
        with open(path, encoding="utf-8") as f:
            verdict = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: unreadable blessing ({err.__class__.__name__})") from None
    if not isinstance(verdict, dict) or not isinstance(verdict.get("blessed"), bool):
        raise UsageError(f"{path}: expected an object with a boolean 'blessed'")
    return verdict


def _read_optional_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _failure_text(failures: list[dict]) -> str:
    if not failures:
        return "no failed threshold recorded"
    return "; ".join(f"{f.get('metric')} on {f.get('slice')} = {f.get('value')} "
                     f"fails {f.get('kind')} threshold {json.dumps(f.get('threshold'))}"
                     for f in failures)


def summary(outputs: dict) -> dict:
    """The pushed model's URI for latest_run.json, or None."""
    pushed = outputs.get("pushed")
    record = _read_optional_json(pushed.path(PUSH_FILE)) if pushed else None
    return {"pushed_model": (record or {}).get("uri") if (record or {}).get("pushed") else None}


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
