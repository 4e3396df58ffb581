"""Pretrained checkpoints from local files (`train.init_from`): read, checked, imported.

Two layouts:
    Hugging Face   config.json (`model_type`), model.safetensors or shards with
                   model.safetensors.index.json (`safetensors.py`), tokenizer files
    KerasHub       a `save_to_preset` directory: config.json (`class_name`),
                   model.weights.h5, tokenizer.json and assets/ (`preset.py`)

Each family is one module (`gpt2.py`, `llama.py`, `bert.py`) giving the `model` section and extra backbone
arguments its config fixes (`settings`) and where each of our weights comes from
(`entries`). The import is exact: the model lmpipe builds from a checkpoint computes what
the reference implementation computes (tests/checkpoints/ prove it to 1e-4), and a config
it could not reproduce is refused in one line rather than imported approximately.

Reading the config needs no TensorFlow (the pipeline's resolvers call it on every run);
the weights are read with numpy and assigned only once every one of them was found and
fits, so a refused checkpoint leaves nothing half-loaded.
"""

from __future__ import annotations

import json
import os

from models.checkpoints import bert, gpt2, llama
from models.checkpoints.common import Checkpoint
from pipeline.core.errors import UsageError

CONFIG_FILE = "config.json"

# Hugging Face model_type -> the family module that imports it.
FAMILIES = {gpt2.MODEL_TYPE: gpt2, llama.MODEL_TYPE: llama, bert.MODEL_TYPE: bert}
# Hugging Face model_type -> its tokenizer's reader in `tokenizer_files`.
TOKENIZERS = {gpt2.MODEL_TYPE: "byte_bpe", llama.MODEL_TYPE: "sentencepiece",
              bert.MODEL_TYPE: "wordpiece"}
# Families whose import is not finished: refused by name rather than mis-imported.
NOT_YET = ("mistral", "qwen2", "roberta")


def is_checkpoint(path: str) -> bool:
    """Whether `path` is a checkpoint directory (a config.json naming a `model_type` or a
    KerasHub `class_name`, and no SavedModel): cheap, no TensorFlow."""
    config = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config) or any(os.path.isfile(os.path.join(path, d, "saved_model.pb"))
                                         for d in ("", "saved_model")):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and ("model_type" in data or "class_name" in data)


def read_checkpoint(directory: str) -> Checkpoint:
    """Read and check a checkpoint's config (no weights, no TensorFlow).

    Args:
        directory: a local checkpoint directory.

    Raises:
        UsageError: no such directory, no or bad config.json, or an architecture or
            setting lmpipe cannot reproduce (one line naming the file, key and value).
    """
    directory = os.path.abspath(os.path.expanduser(directory))
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise UsageError(f"train.init_from: no checkpoint directory at {directory}")
    if not os.path.isfile(path):
        raise UsageError(f"train.init_from {directory}: no {CONFIG_FILE} (expected a Hugging "
                         "Face checkpoint or a KerasHub preset directory)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a model config (a JSON object)")
    if "class_name" in config and "model_type" not in config:
        from models.checkpoints import preset

        return preset.read(directory, config, path)
    return _read_huggingface(directory, config, path)


def _read_huggingface(directory: str, config: dict, path: str) -> Checkpoint:
    model_type = config.get("model_type")
    family = FAMILIES.get(model_type)
    if family is None:
        later = " (not yet: refused rather than imported inexactly)" if model_type in NOT_YET else ""
        raise UsageError(f"{path}: model_type={json.dumps(model_type)} is not supported{later}; "
                         f"lmpipe imports {', '.join(sorted(FAMILIES))}")
    try:
        model, backbone = family.settings(config, path)
        vocabulary_size = int(config["vocab_size"])
    except KeyError as err:
        raise UsageError(f"{path}: key {err} is missing") from None
    except (TypeError, ValueError) as err:
        raise UsageError(f"{path}: a value has the wrong type ({err})") from None
    return Checkpoint(directory=directory, layout="huggingface", model_type=model_type,
                      model=model, backbone=backbone, vocabulary_size=vocabulary_size)


def resolve_model_config(model_config, checkpoint: Checkpoint):
    """The `model` section with the checkpoint's shape filled in.

    A field the user set (it differs from its default) must agree with the checkpoint;
    `dropout` and `document_masking` stay the user's (they change training, not the
    function the weights compute).

    Args:
        model_config: the run's `ModelConfig`.
        checkpoint: the `read_checkpoint` result.

    Returns:
        A `ModelConfig`.

    Raises:
        UsageError: one line naming the conflicting key and both values.
    """
    import dataclasses

    defaults = type(model_config)()
    for name, value in checkpoint.model.items():
        mine = getattr(model_config, name)
        if mine != getattr(defaults, name) and mine != value:
            raise UsageError(f"model.{name} is {json.dumps(mine)} but the checkpoint "
                             f"{checkpoint.directory} has {json.dumps(value)} (train.init_from "
                             f"fixes the model's shape: remove model.{name})")
    return dataclasses.replace(model_config, **checkpoint.model)


def check_weight_files(checkpoint: Checkpoint) -> None:
    """Refuse missing, truncated or malformed safetensors files before any data step runs
    (their headers and sizes only: cheap, and no TensorFlow). A preset's weights are
    checked when they are loaded."""
    if checkpoint.layout == "huggingface":
        from models.checkpoints.safetensors import Tensors

        Tensors(checkpoint.directory)


def load_weights(model, checkpoint: Checkpoint) -> int:
    """Overwrite `model`'s weights with the checkpoint's (a classifier's new head aside).

    Args:
        model: a freshly built model of `resolve_model_config`'s section and
            `checkpoint.backbone`'s arguments.
        checkpoint: the `read_checkpoint` result.

    Returns:
        The number of weights assigned.

    Raises:
        UsageError: a missing, truncated or unreadable weights file, or a tensor that is
            missing, unused or of the wrong shape; nothing is assigned then.
    """
    from models.checkpoints import common

    family = FAMILIES[checkpoint.model_type]
    if checkpoint.layout == "keras_hub":
        from models.checkpoints import preset

        tensors = preset.Tensors(checkpoint.directory, family)
        entries, ignored = preset.entries(family, checkpoint.model), family.PRESET_IGNORED
    else:
        from models.checkpoints.safetensors import Tensors

        tensors = Tensors(checkpoint.directory)
        entries = family.entries(tensors.names(), checkpoint.model)
        # A tied head saved anyway is the token embedding again.
        ignored = family.IGNORED_SUFFIXES + (("lm_head.weight",) if checkpoint.model.get(
            "tie_embeddings") else ())
    common.check_all_used(entries, tensors, ignored, checkpoint.model_type)
    return common.assign(common.weights_for(model, entries, tensors, checkpoint.model_type),
                         tensors)


def tokenizer_of(checkpoint: Checkpoint) -> tuple[dict, bytes]:
    """The checkpoint's own tokenizer as a tokenizer artifact: (`TokenizerInfo` fields,
    the model file's bytes), checked against its vocabulary size.

    Raises:
        UsageError: missing or unreadable tokenizer files, or another vocabulary size.
    """
    from models.checkpoints import tokenizer_files

    if checkpoint.layout == "keras_hub":
        from models.checkpoints import preset

        return preset.tokenizer_of(checkpoint)
    with open(os.path.join(checkpoint.directory, CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)
    read = TOKENIZERS[checkpoint.model_type]
    return getattr(tokenizer_files, read)(checkpoint.directory, checkpoint.vocabulary_size, config)
