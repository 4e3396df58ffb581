"""What every checkpoint family shares: the checkpoint's description, a weight's source,
refusals, and the assignment that either fills every weight of a model or changes none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.core.errors import UsageError


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory as lmpipe understands it.

    Attributes:
        directory: the checkpoint's directory (absolute).
        layout: `huggingface` or `keras_hub`.
        model_type: the family module's name (`gpt2`).
        model: the `model` section fields its config fixes.
        backbone: extra backbone arguments (activation, norm epsilon).
        vocabulary_size: rows of its token embedding.
    """

    directory: str
    layout: str
    model_type: str
    model: dict
    backbone: dict
    vocabulary_size: int


@dataclass(frozen=True)
class Entry:
    """Where one of our weights comes from: a checkpoint tensor, and how it is laid out
    for Keras (None: as it is)."""

    name: str
    transform: Callable[[np.ndarray], np.ndarray] | None = None


def refuse_unless(condition: bool, source: str, key: str, value) -> None:
    """A one-line UsageError naming a config key whose value lmpipe cannot express."""
    if not condition:
        raise UsageError(f"{source}: {key}={json_value(value)} is not supported by lmpipe's "
                         "backbones (a model imported anyway would not compute what it did)")


def json_value(value) -> str:
    import json

    return json.dumps(value)


def weights_for(model, entries: dict[str, Entry], tensors, family: str) -> list:
    """Pair every weight of `model`'s backbone, and of its head when the checkpoint has
    one (a causal or masked LM head), with its checkpoint tensor, shapes checked; a
    classifier's new head is left as initialized.

    Only the tensors' recorded shapes are read here (the transform runs on a zero-stride
    stand-in), so checking holds no second copy of the weights, and nothing is assigned
    yet: a refusal leaves the model untouched.

    Args:
        model: a freshly built lmpipe model (`CausalLM`, `MaskedLM`, `SequenceClassifier`).
        entries: our weight path -> `Entry`, for the backbone and the family's LM head.
        tensors: the checkpoint's tensors (`safetensors.Tensors` or the like).
        family: names the family in messages.

    Returns:
        [(variable, entry)] for `assign`.

    Raises:
        UsageError: a tensor missing, of the wrong shape, or left over unused.
    """
    backbone = {id(v) for v in model.backbone.weights}
    pairs = []
    for variable in model.weights:
        entry = entries.get(variable.path)
        if entry is None:
            if id(variable) in backbone or _is_lm_head(variable.path):
                raise UsageError(f"{tensors.origin}: lmpipe's {family} weight {variable.path} "
                                 "has no tensor to come from")
            continue  # a task's new head
        if entry.name not in tensors:
            raise UsageError(f"{tensors.origin}: tensor {entry.name} is missing")
        stand_in = np.broadcast_to(np.zeros((), np.float32), tensors.shape(entry.name))
        try:
            shape = tuple((entry.transform(stand_in) if entry.transform else stand_in).shape)
        except ValueError:  # a reshape that cannot be done: the shape is wrong
            shape = None
        if shape != tuple(variable.shape):
            raise UsageError(f"{tensors.file_of(entry.name)}: tensor {entry.name} has shape "
                             f"{list(tensors.shape(entry.name))}, which does not fit "
                             f"{variable.path} {list(variable.shape)} of the config's model")
        pairs.append((variable, entry))
    return pairs


def _is_lm_head(path: str) -> bool:
    return path.startswith(("lm_head/", "mlm_head/"))


def check_all_used(entries: dict[str, Entry], tensors, ignored: tuple, family: str) -> None:
    """Refuse a checkpoint with tensors no weight reads: it is not the architecture its
    config claims, and importing the rest would silently drop what they do."""
    used = {entry.name for entry in entries.values()}
    for name in tensors.names():
        if name not in used and not name.endswith(ignored):
            raise UsageError(f"{tensors.file_of(name)}: tensor {name} is not part of a {family} "
                             "model as its config.json describes it")


def assign(pairs: list, tensors) -> int:
    """Read, lay out and assign each checked (variable, entry) pair in turn (one tensor in
    memory at a time); the number of weights assigned."""
    for variable, entry in pairs:
        value = tensors.get(entry.name)
        value = entry.transform(value) if entry.transform else value
        variable.assign(np.ascontiguousarray(value, dtype=variable.dtype))
    return len(pairs)
