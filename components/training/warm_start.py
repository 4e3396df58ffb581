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
whose variables do not have this model's structure and shapes. An int8 export (a model
artifact's `saved_model_int8/`, or a version pushed with `push.variant: quantized`) holds
int8 weights and scales, not the float weights training continues from, and no version
carries the float ones: it is refused, naming the float model it came from when that is
still there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from components.training.record import CARD_FILE, check_tokenizer
from models.tokenizer_info import join, open_file, read_info
from pipeline.artifacts import Artifact
from pipeline.errors import ConfigError, UsageError, first_line

LATEST_PUSHED = "latest_pushed"


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


def saved_model_dir(source: str) -> str:
    """The SavedModel a warm-start source names: the directory itself, or a model
    artifact's `saved_model/`; a UsageError when it is neither."""
    saved_model = source if os.path.isfile(os.path.join(source, "saved_model.pb")) else (
        os.path.join(source, "saved_model"))
    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise UsageError(f"train.warm_start {source}: neither a SavedModel, a model artifact "
                         "(with saved_model/) nor a .keras file")
    return saved_model


def load_weights(model, source: str, tokenizer_sha256: str, *, quantized: bool = False) -> str:
    """Overwrite `model`'s weights with those of the model at `source`.

    Args:
        model: the freshly built model (under the strategy's scope).
        source: a model artifact, SavedModel directory (e.g. a serving version) or `.keras` file.
        tokenizer_sha256: `tokenizer_digest` of this run's tokenizer.
        quantized: `model` was built quantized, as the export was (a distillation teacher
            read from an int8 version), so int8 weights fit it; otherwise they are refused.

    Returns:
        What was read: `saved_model` or `keras`.

    Raises:
        UsageError: the source has another tokenizer, no record of its tokenizer, or
            weights that do not fit `model`.
    """
    check_tokenizer(source, tokenizer_sha256)
    if os.path.isfile(source):
        _load_keras(model, source)
        return "keras"
    saved_model = saved_model_dir(source)
    if not quantized:
        _refuse_int8(saved_model, source)
    _load_saved_model(model, saved_model, source)
    return "saved_model"


def _refuse_int8(saved_model: str, source: str) -> None:
    """Raise a UsageError if the SavedModel's weights are int8 (a quantized export)."""
    import tensorflow as tf

    prefix = os.path.join(saved_model, "variables", "variables")
    try:
        dtypes = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map().values()
    except (ValueError, tf.errors.OpError):
        return  # unreadable: the restore reports it
    if tf.int8 not in set(dtypes):
        return
    float_model = _float_origin(saved_model)
    hint = (f"start from the float model at {float_model}" if float_model else
            "start from its float model artifact or a version pushed with push.variant float")
    raise UsageError(f"train.warm_start {source}: an int8 (quantized) export, whose int8 "
                     f"weights are not the float weights training continues from; {hint}")


def _float_origin(saved_model: str) -> str | None:
    """The float model an int8 export was made from, if it is still there: the model
    artifact holding `saved_model_int8/`, or the one a pushed version's card names."""
    from models.quantize import FLOAT_DIR, INT8_DIR

    directory = os.path.abspath(saved_model)
    candidates = []
    if os.path.basename(directory) == INT8_DIR:
        candidates.append(os.path.dirname(directory))
    try:
        with open(os.path.join(directory, CARD_FILE), encoding="utf-8") as f:
            candidates.append(str((json.load(f).get("model") or {}).get("uri") or ""))
    except (OSError, ValueError, AttributeError):
        pass
    for candidate in filter(None, candidates):
        if os.path.isfile(os.path.join(candidate, FLOAT_DIR, "saved_model.pb")):
            return candidate
    return None


def _load_saved_model(model, saved_model: str, source: str) -> None:
    import tensorflow as tf

    prefix = os.path.join(saved_model, "variables", "variables")
    try:
        stored = [name for name, _ in tf.train.list_variables(prefix)
                  if name.startswith("model/") and name.endswith("VARIABLE_VALUE")]
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.assert_existing_objects_matched()
    except (IndexError, tf.errors.OpError) as err:
        # TensorFlow reports a truncated file as IndexError, a garbled one as OpError.
        raise UsageError(f"train.warm_start {source}: cannot read its weights "
                         f"({first_line(err, 300)})") from None
    except (AssertionError, ValueError) as err:
        raise UsageError(f"train.warm_start {source}: its weights do not fit this model "
                         f"({_unmatched(err)}); model sections must match") from None
    # Every variable of this model was found; a bigger model's extra ones are not an error
    # to the restore, but what they hold would be silently dropped.
    if len(stored) > len(model.weights):
        raise UsageError(f"train.warm_start {source}: its weights do not fit this model "
                         f"(it has {len(stored) - len(model.weights)} weights more); model "
                         "sections must match")


def _unmatched(err: BaseException) -> str:
    """A short reason from a checkpoint restore's error."""
    text = str(err)
    unbound = re.search(r"Found (\d+) Python objects that were not bound", text)
    first = re.search(r"path=([^,]+), shape=(\([^)]*\))", text)
    if unbound and first:
        return (f"{unbound.group(1)} of this model's objects are not in it, e.g. "
                f"{first.group(1)} {first.group(2)}")
    return first_line(err, 300)


def _load_keras(model, path: str) -> None:
    from models.factory import load_model

    try:
        source = load_model(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"train.warm_start {path}: cannot load "
                         f"({first_line(err, 300)})") from None
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
