"""`train.warm_start`: which model a run starts from, and loading its weights safely.

Resolution (`resolve`, no TensorFlow: it runs on every pipeline run, cached or not) turns
the config value into an input artifact whose fingerprint enters train's cache key:

- a path: the model there; the fingerprint covers its files' names, sizes and times.
- `latest_pushed`: the newest version in `push.serving_dir` (none yet: a fresh start);
  the fingerprint covers its path and SavedModel digest, so a new push changes the key.
  If that version is the output of this very execution (same code, config and inputs,
  recognised by the `base_key` its training recorded), the input resolves to what that
  execution itself started from: a rerun after pushing its own model is cached, instead
  of warm-starting from itself and retraining forever.

Loading (`load_weights`) reads the weights of a SavedModel (a model artifact's
`saved_model/`, or a serving version, whose variables are a checkpoint of the exported
`tf.Module`, the Keras model under `model`) or of a `.keras` file. It refuses a model
trained with another tokenizer (recorded by its `train_summary.json` or model card) or
whose variables do not have this model's structure and shapes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from models.tokenizer_info import join, open_file, read_info
from pipeline.artifacts import Artifact
from pipeline.errors import ConfigError, UsageError

LATEST_PUSHED = "latest_pushed"
SUMMARY_FILE = "train_summary.json"
CARD_FILE = "model_card.json"


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
    from components.evaluation import serving_dir as serving

    found = serving.versions(os.path.abspath(serving_dir))
    properties = {"requested": LATEST_PUSHED, "base_key": base_key}
    if not found:
        return Artifact(type="Model", uri="", properties={**properties, "version": None},
                        fingerprint=_sha256(f"{LATEST_PUSHED}|none"))
    latest = found[-1]
    recorded = ((latest.card.get("training") or {}).get("warm_start") or {})
    if recorded.get("base_key") == base_key and recorded.get("artifact"):
        return Artifact.from_json(recorded["artifact"])
    digest = latest.digest()
    return Artifact(type="Model", uri=latest.path,
                    fingerprint=_sha256(f"{latest.path}|{digest}"),
                    properties={**properties, "version": latest.number, "model_sha256": digest})


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


def tokenizer_digest(tokenizer_dir: str) -> str:
    """SHA-256 of a tokenizer artifact's description and model file: its identity."""
    info = read_info(tokenizer_dir)
    digest = hashlib.sha256(json.dumps(info.to_json(), sort_keys=True).encode())
    with open_file(join(tokenizer_dir, info.model_file)) as f:
        digest.update(f.read())
    return digest.hexdigest()


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


def load_weights(model, source: str, tokenizer_sha256: str) -> str:
    """Overwrite `model`'s weights with those of the model at `source`.

    Args:
        model: the freshly built model (under the strategy's scope).
        source: a model artifact, SavedModel directory (e.g. a serving version) or `.keras` file.
        tokenizer_sha256: `tokenizer_digest` of this run's tokenizer.

    Returns:
        What was read: `saved_model` or `keras`.

    Raises:
        UsageError: the source has another tokenizer, no record of its tokenizer, or
            weights that do not fit `model`.
    """
    _check_tokenizer(source, tokenizer_sha256)
    if os.path.isfile(source):
        _load_keras(model, source)
        return "keras"
    saved_model = source if os.path.isfile(os.path.join(source, "saved_model.pb")) else (
        os.path.join(source, "saved_model"))
    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise UsageError(f"train.warm_start {source}: neither a SavedModel, a model artifact "
                         "(with saved_model/) nor a .keras file")
    _load_saved_model(model, saved_model, source)
    return "saved_model"


def _training_record(source: str) -> dict | None:
    """The train summary of the model at `source`, wherever its layout keeps it."""
    directory = source if os.path.isdir(source) else os.path.dirname(source)
    candidates = [(os.path.join(directory, SUMMARY_FILE), None),
                  (os.path.join(directory, CARD_FILE), "training"),
                  (os.path.join(os.path.dirname(directory), SUMMARY_FILE), None)]
    for path, key in candidates:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        data = data.get(key) if key and isinstance(data, dict) else data
        if isinstance(data, dict):
            return data
    return None


def _check_tokenizer(source: str, expected: str) -> None:
    training = _training_record(source)
    recorded = ((training or {}).get("tokenizer") or {}).get("sha256")
    if recorded is None:
        raise UsageError(f"train.warm_start {source}: cannot tell which tokenizer it was "
                         f"trained with (no {SUMMARY_FILE} or {CARD_FILE} recording it)")
    if recorded != expected:
        raise UsageError(f"train.warm_start {source}: trained with another tokenizer "
                         f"(sha256 {recorded[:12]}, this run's is {expected[:12]})")


def _load_saved_model(model, saved_model: str, source: str) -> None:
    import tensorflow as tf

    prefix = os.path.join(saved_model, "variables", "variables")
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise UsageError(f"train.warm_start {source}: its weights do not fit this model "
                         f"({_unmatched(err)}); model sections must match") from None


def _unmatched(err: BaseException) -> str:
    """A short reason from a checkpoint restore's error."""
    text = str(err)
    unbound = re.search(r"Found (\d+) Python objects that were not bound", text)
    first = re.search(r"path=([^,]+), shape=(\([^)]*\))", text)
    if unbound and first:
        return (f"{unbound.group(1)} of this model's objects are not in it, e.g. "
                f"{first.group(1)} {first.group(2)}")
    return _first_line(err)


def _load_keras(model, path: str) -> None:
    from models.factory import load_model

    try:
        source = load_model(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"train.warm_start {path}: cannot load ({_first_line(err)})") from None
    theirs = {v.path: tuple(v.shape) for v in source.weights}
    ours = {v.path: tuple(v.shape) for v in model.weights}
    if theirs != ours:
        missing = [p for p in ours if p not in theirs]
        differ = [p for p in ours if p in theirs and ours[p] != theirs[p]]
        detail = (f"{differ[0]} is {ours[differ[0]]} here, {theirs[differ[0]]} there" if differ
                  else f"{missing[0]} {ours[missing[0]]} is not in it" if missing
                  else f"it has {len(theirs) - len(ours)} weights more")
        raise UsageError(f"train.warm_start {path}: its weights do not fit this model "
                         f"({detail}); model sections must match")
    by_path = {v.path: v for v in source.weights}
    for variable in model.weights:
        variable.assign(by_path[variable.path].value)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else err.__class__.__name__
