"""The model artifact (train), and references to a model (`train.warm_start`, and the
checkpoint `train.init_from` names).

    saved_model/         the servable SavedModel (`models/export.py`), float32
    saved_model_int8/    the same, int8 (only with `train.quantize` int8 or int8_weights)
    model.keras          the Keras model (architecture + weights), float32
    train_summary.json   what was trained, with which resolved hyperparameters, from which
                         warm start and tokenizer, and how fast (the training record)
    train_log.csv        step, loss, learning_rate, grad_norm, tokens_per_second, mfu,
                         elapsed_seconds, eval_loss
    logs/                TensorBoard logs (`train/`, `eval/`)

A pushed version (`serving_dir.py`) holds the SavedModel itself and carries the training
record inside its model card (`training`).

A model reference (`resolve`, no TensorFlow: it runs on every pipeline run, cached or not)
turns `train.warm_start` into an input artifact whose fingerprint enters the cache key:

- a path: the model there; the fingerprint covers its files' names, sizes and times.
- `latest_pushed`: the newest version in `push.serving_dir` (none yet: a fresh start);
  the fingerprint covers its path and SavedModel digest, so a new push changes the key.
  If that version is the output of this very execution (same code, config and inputs,
  recognised by the `base_key` its training recorded), the input resolves to what that
  execution itself started from: a rerun after pushing its own model is cached, instead
  of warm-starting from itself and retraining forever.
"""

from __future__ import annotations

import hashlib
import json
import os

from pipeline.core import files
from pipeline.core.artifacts import Artifact
from pipeline.core.contracts import serving_dir as serving
from pipeline.core.contracts.serving_dir import MODEL_CARD as CARD_FILE, SAVED_MODEL_FILE
from pipeline.core.errors import ConfigError

FLOAT_DIR = "saved_model"
INT8_DIR = "saved_model_int8"
# push.variant -> the model artifact's SavedModel directory.
VARIANT_DIRS = {"float": FLOAT_DIR, "quantized": INT8_DIR}
KERAS_FILE = "model.keras"
SUMMARY_FILE = "train_summary.json"
LOG_FILE = "train_log.csv"
# `train.warm_start` (and `train.distill.teacher`): the newest version in `push.serving_dir`.
LATEST_PUSHED = "latest_pushed"


def is_saved_model(path: str) -> bool:
    """Whether `path` is a SavedModel directory (local or any Beam filesystem)."""
    return files.exists(files.join(path, SAVED_MODEL_FILE))


def find_saved_model(path: str) -> str | None:
    """The SavedModel `path` names: the directory itself, or a model artifact's
    `saved_model/`; None when it is neither (local paths)."""
    for candidate in (path, os.path.join(path, FLOAT_DIR)):
        if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    return None


def training_record(path: str) -> dict | None:
    """The training record kept beside a model.

    Args:
        path: a model artifact, its `saved_model/` or `model.keras`, or a serving version.

    Returns:
        The record, or None when there is none.
    """
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    candidates = [(os.path.join(directory, SUMMARY_FILE), None),
                  (os.path.join(directory, CARD_FILE), "training"),
                  (os.path.join(os.path.dirname(directory), SUMMARY_FILE), None)]
    for candidate, key in candidates:
        try:
            with open(candidate, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        data = data.get(key) if key and isinstance(data, dict) else data
        if isinstance(data, dict):
            return data
    return None


def resolve(requested: str | None, serving_dir: str, base_key: str) -> Artifact | None:
    """The warm-start input for `train.warm_start`.

    Args:
        requested: the config value (a path, `latest_pushed`, or None).
        serving_dir: `push.serving_dir`.
        base_key: train's cache key without the warm-start input (code, config, inputs).

    Returns:
        None without a warm start; else an artifact whose `uri` is the model ("" when
        nothing has been pushed yet) and whose properties record the request.
    """
    if requested is None:
        return None
    if requested == LATEST_PUSHED:
        return _latest_pushed(serving_dir, base_key)
    return _path(requested, base_key)


def _latest_pushed(serving_dir: str, base_key: str) -> Artifact:
    found = serving.versions(os.path.abspath(serving_dir))
    properties = {"requested": LATEST_PUSHED, "base_key": base_key}
    if not found:
        return Artifact(type="Model", uri="", properties={**properties, "version": None},
                        fingerprint=_sha256(f"{LATEST_PUSHED}|none"))
    latest = found[-1]
    recorded = ((latest.card.get("training") or {}).get("warm_start") or {})
    if recorded.get("base_key") == base_key and recorded.get("artifact"):
        return recorded_reference(recorded["artifact"])
    digest = latest.digest()
    return Artifact(type="Model", uri=latest.path,
                    fingerprint=_sha256(f"{latest.path}|{digest}"),
                    properties={**properties, "version": latest.number, "model_sha256": digest})


def recorded_reference(recorded: dict) -> Artifact:
    """A model reference as a training record in a model card keeps it, its path made
    absolute again: cards show paths relative to the working directory by default
    (`push.card_paths`)."""
    artifact = Artifact.from_json(recorded)
    uri = artifact.uri
    if uri and not os.path.isabs(uri) and "://" not in uri and not uri.startswith("<"):
        artifact = Artifact(**{**artifact.to_json(), "uri": os.path.abspath(uri)})
    return artifact


def _path(requested: str, base_key: str) -> Artifact:
    if "://" in requested:
        raise ConfigError("train.warm_start", "must be a local path (on Vertex AI, the /gcs/ "
                          f"mount of the bucket) or 'latest_pushed', got {requested!r}")
    path = os.path.abspath(os.path.expanduser(requested))
    if not os.path.exists(path):
        raise ConfigError("train.warm_start", f"no model at {path} (expected a model "
                          "artifact, a SavedModel directory, a .keras file or 'latest_pushed')")
    return Artifact(type="Model", uri=path, fingerprint=_files_fingerprint(path),
                    properties={"requested": requested, "base_key": base_key})


def resolve_checkpoint(requested: str) -> Artifact:
    """`train.init_from` as the train step's input: the checkpoint directory, fingerprinted
    by its files' names, sizes and times (a changed checkpoint retrains).

    Raises:
        ConfigError: a URL (a Vertex step reads the bucket's /gcs/ mount) or no directory.
    """
    if "://" in requested:
        raise ConfigError("train.init_from", "must be a local directory (on Vertex AI, the "
                          f"/gcs/ mount of the bucket), got {requested!r}")
    path = os.path.abspath(os.path.expanduser(requested))
    if not os.path.isdir(path):
        raise ConfigError("train.init_from", f"no checkpoint directory at {path}")
    return Artifact(type="Checkpoint", uri=path, fingerprint=_files_fingerprint(path),
                    properties={"requested": requested})


def _files_fingerprint(path: str) -> str:
    """Names, sizes and modification times of the files at `path` (cheap, unlike content)."""
    entries = []
    if os.path.isfile(path):
        stat = os.stat(path)
        entries.append(("", stat.st_size, stat.st_mtime_ns))
    for directory, _, names in sorted(os.walk(path)):
        for name in sorted(names):
            full = os.path.join(directory, name)
            stat = os.stat(full)
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return _sha256(json.dumps([path, entries]))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record(artifact: Artifact | None) -> dict | None:
    """What `train_summary.json` says about the warm start (the resolver reads it back).

    Args:
        artifact: the resolved warm-start input, or None.

    Returns:
        {"requested", "source" (None: nothing to start from), "version", "model_sha256",
        "base_key", "artifact"}; the session adds "loaded": `saved_model`, `keras`,
        `checkpoint` (resumed: the weights came from the run's own checkpoint) or None.
    """
    if artifact is None:
        return None
    properties = artifact.properties
    return {"requested": properties.get("requested"), "source": artifact.uri or None,
            "version": properties.get("version"), "model_sha256": properties.get("model_sha256"),
            "base_key": properties.get("base_key"), "artifact": artifact.to_json()}
