"""`train.warm_start`: loading the weights of the model a run starts from, safely.

Which model `train.warm_start` names is resolved by `pipeline/core/contracts/model.py`
(`resolve`, no TensorFlow); this module loads it.

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

import json
import os
import re

from pipeline.core.contracts.model import (CARD_FILE, FLOAT_DIR, INT8_DIR, SAVED_MODEL_FILE,
                                           SUMMARY_FILE, find_saved_model, training_record)
from pipeline.core.errors import UsageError, first_line


def check_tokenizer(source: str, expected: str) -> None:
    """Refuse to warm-start from a model trained with another tokenizer.

    Args:
        source: the model `train.warm_start` names.
        expected: the sha256 of this run's tokenizer.
    """
    recorded = ((training_record(source) or {}).get("tokenizer") or {}).get("sha256")
    if recorded is None:
        raise UsageError(f"train.warm_start {source}: cannot tell which tokenizer it was "
                         f"trained with (no {SUMMARY_FILE} or {CARD_FILE} recording it)")
    if recorded != expected:
        raise UsageError(f"train.warm_start {source}: trained with another tokenizer "
                         f"(sha256 {recorded[:12]}, this run's is {expected[:12]})")


def saved_model_dir(source: str) -> str:
    """The SavedModel a warm-start source names: the directory itself, or a model
    artifact's `saved_model/`; a UsageError when it is neither."""
    saved_model = find_saved_model(source)
    if saved_model is None:
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
        if os.path.isfile(os.path.join(candidate, FLOAT_DIR, SAVED_MODEL_FILE)):
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
