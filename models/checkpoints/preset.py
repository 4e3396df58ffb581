"""KerasHub presets (`save_to_preset` directories) onto lmpipe's backbones.

A preset is config.json (`class_name`: the keras-hub backbone, `config`: its arguments),
model.weights.h5, tokenizer.json (the keras-hub tokenizer's config) and its assets
(GPT-2: assets/tokenizer/vocabulary.json and merges.txt; Llama: vocabulary.spm; BERT:
vocabulary.txt); a task saved with it adds task.json and, when the task has weights of
its own (BERT's masked-LM head), task.weights.h5. keras-hub builds the model from the
local directory (`from_preset`, no download) and its weights are copied into lmpipe's
own backbone, which is what trains and exports. lmpipe's backbones are built from the
same computations as keras-hub's, so only where a weight sits differs: each family module
says where (`PRESET_CLASS`, `PRESET_PATHS`, `preset_settings`).
"""

from __future__ import annotations

import json
import os

from models.checkpoints import bert, gpt2, llama
from pipeline.core.errors import UsageError, first_line

WEIGHTS_FILE = "model.weights.h5"
TASK_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
TOKENIZER_CONFIG = "tokenizer.json"
ASSETS = os.path.join("assets", "tokenizer")

# keras-hub backbone class -> the family module that imports it.
CLASSES = {family.PRESET_CLASS: family for family in (gpt2, llama, bert)}


def read(directory: str, config: dict, path: str):
    """The `Checkpoint` a preset's config.json describes (no weights read).

    Raises:
        UsageError: a backbone class lmpipe does not import, a missing argument, or a
            setting lmpipe's backbone cannot reproduce.
    """
    from models.checkpoints.common import Checkpoint

    class_name = config.get("class_name")
    family = CLASSES.get(class_name)
    if family is None:
        raise UsageError(f"{path}: class_name={json.dumps(class_name)} is not supported; lmpipe "
                         f"imports KerasHub presets of {', '.join(sorted(CLASSES))}")
    arguments = config.get("config") or {}
    try:
        model, backbone = family.preset_settings(arguments, path)
        vocabulary_size = int(arguments["vocabulary_size"])
    except KeyError as err:
        raise UsageError(f"{path}: config.{err.args[0]} is missing") from None
    return Checkpoint(directory=directory, layout="keras_hub", model_type=family.MODEL_TYPE,
                      model=model, backbone=backbone, vocabulary_size=vocabulary_size)


def _head_task(directory: str, family) -> bool:
    """Whether the preset holds the family's task with a head of its own (task.json of
    that class, and its weights)."""
    task = family.PRESET_HEAD_TASK
    path = os.path.join(directory, TASK_FILE)
    if task is None or not os.path.isfile(os.path.join(directory, TASK_WEIGHTS_FILE)):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("class_name") == task
    except (OSError, ValueError):
        return False


class Tensors:
    """The preset's weights by keras-hub weight path (the same interface as
    `safetensors.Tensors`): the backbone's, and a masked-LM task's head when it has one.

    Raises:
        UsageError: model.weights.h5 (or task.weights.h5) is missing, truncated or does
            not fit config.json.
    """

    def __init__(self, directory: str, family):
        import keras_hub

        self.origin = directory
        self.path = os.path.join(directory, WEIGHTS_FILE)
        if not os.path.isfile(self.path):
            raise UsageError(f"{directory}: no {WEIGHTS_FILE}")
        with_head = _head_task(directory, family)
        try:
            if with_head:
                model = keras_hub.models.MaskedLM.from_preset(directory, preprocessor=None)
            else:
                model = keras_hub.models.Backbone.from_preset(directory)
        except Exception as err:  # noqa: BLE001 - any unreadable preset is the user's to fix
            read = f"{WEIGHTS_FILE} or {TASK_WEIGHTS_FILE}" if with_head else WEIGHTS_FILE
            raise UsageError(f"{os.path.join(directory, read)}: cannot be read into the "
                             f"config's model ({first_line(err, 300)})") from None
        self._weights = {w.path: w for w in model.weights}

    def names(self) -> list[str]:
        return list(self._weights)

    def __contains__(self, name: str) -> bool:
        return name in self._weights

    def shape(self, name: str) -> tuple:
        return tuple(self._weights[name].shape)

    def file_of(self, name: str) -> str:
        return self.path

    def get(self, name: str):
        import numpy as np

        return np.asarray(self._weights[name].numpy())


def entries(family, model: dict) -> dict:
    """Our weight path -> the keras-hub weight it is copied from (as it is)."""
    from models.checkpoints.common import Entry

    return {path: Entry(their_path(path, family.PRESET_PATHS))
            for path in family.entries([], model)}


def their_path(path: str, renamed: dict) -> str:
    """keras-hub's name of our weight `path`: each segment, or two consecutive ones, that
    `renamed` lists replaced."""
    parts, found = path.split("/"), []
    while parts:
        pair = "/".join(parts[:2])
        if len(parts) > 1 and pair in renamed:
            found.append(renamed[pair])
            parts = parts[2:]
        else:
            found.append(renamed.get(parts[0], parts[0]))
            parts = parts[1:]
    return "/".join(found)


def tokenizer_of(checkpoint) -> tuple[dict, bytes]:
    """The preset's tokenizer from assets/tokenizer/ (GPT-2: vocabulary.json and
    merges.txt; Llama: vocabulary.spm; BERT: vocabulary.txt, its settings from
    tokenizer.json's config).

    Raises:
        UsageError: missing or unreadable tokenizer files, or another vocabulary size.
    """
    from models.checkpoints import tokenizer_files

    assets = os.path.join(checkpoint.directory, ASSETS)
    size = checkpoint.vocabulary_size
    if checkpoint.model_type == gpt2.MODEL_TYPE:
        return tokenizer_files.byte_bpe(assets, size, {}, vocabulary_file="vocabulary.json")
    if checkpoint.model_type == llama.MODEL_TYPE:
        return tokenizer_files.sentencepiece(assets, size, {}, model_file="vocabulary.spm")
    path = os.path.join(checkpoint.directory, TOKENIZER_CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f).get("config") or {}
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: cannot be read ({err})") from None
    return tokenizer_files.keras_hub_wordpiece(assets, size, settings, path)
