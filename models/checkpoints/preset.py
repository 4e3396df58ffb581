"""KerasHub presets (`save_to_preset` directories) onto lmpipe's backbones.

A preset is config.json (`class_name`: the keras-hub backbone, `config`: its arguments),
model.weights.h5, tokenizer.json (the keras-hub tokenizer's config) and its assets
(GPT-2: assets/tokenizer/vocabulary.json and merges.txt). keras-hub builds the backbone
from the local directory (`Backbone.from_preset`, no download), and its weights are copied
into lmpipe's own backbone, which is what trains and exports: lmpipe's `GPTBackbone` is
built from the same keras-hub layers as `GPT2Backbone`, so the weights differ only in
where the token and position embeddings sit.
"""

from __future__ import annotations

import json
import os

from models.checkpoints import gpt2
from pipeline.core.errors import UsageError, first_line

WEIGHTS_FILE = "model.weights.h5"

# keras-hub backbone class -> the family module whose weight paths lmpipe's model has.
CLASSES = {"GPT2Backbone": gpt2}
# lmpipe's weight path prefix -> keras-hub GPT2Backbone's (the rest are the same).
_RENAMED = {"embeddings/token_embedding/": "token_embedding/",
            "embeddings/position_embedding/": "position_embedding/"}


def read(directory: str, config: dict, path: str):
    """The `Checkpoint` a preset's config.json describes (no weights read).

    Raises:
        UsageError: a backbone class lmpipe does not import, or a missing argument.
    """
    from models.checkpoints.common import Checkpoint

    class_name = config.get("class_name")
    if class_name not in CLASSES:
        raise UsageError(f"{path}: class_name={json.dumps(class_name)} is not supported; lmpipe "
                         f"imports KerasHub presets of {', '.join(sorted(CLASSES))}")
    arguments = config.get("config") or {}
    try:
        hidden = int(arguments["hidden_dim"])
        model = {"family": "gpt", "num_layers": int(arguments["num_layers"]),
                 "hidden_dim": hidden, "num_heads": int(arguments["num_heads"]),
                 "intermediate_dim": int(arguments["intermediate_dim"]),
                 "max_sequence_length": int(arguments["max_sequence_length"]),
                 "tie_embeddings": True}
        vocabulary_size = int(arguments["vocabulary_size"])
    except KeyError as err:
        raise UsageError(f"{path}: config.{err.args[0]} is missing") from None
    # keras-hub's GPT2Backbone: tanh GELU, LayerNorm epsilon 1e-5, the head tied.
    backbone = {"activation": "gelu_approximate", "layer_norm_epsilon": 1e-5}
    return Checkpoint(directory=directory, layout="keras_hub", model_type="gpt2", model=model,
                      backbone=backbone, vocabulary_size=vocabulary_size)


class Tensors:
    """The preset's weights by keras-hub weight path (the same interface as
    `safetensors.Tensors`).

    Raises:
        UsageError: model.weights.h5 is missing, truncated or does not fit config.json.
    """

    def __init__(self, directory: str):
        import keras_hub

        self.origin = directory
        self.path = os.path.join(directory, WEIGHTS_FILE)
        if not os.path.isfile(self.path):
            raise UsageError(f"{directory}: no {WEIGHTS_FILE}")
        try:
            backbone = keras_hub.models.Backbone.from_preset(directory)
        except Exception as err:  # noqa: BLE001 - any unreadable preset is the user's to fix
            raise UsageError(f"{self.path}: cannot be read into the config's "
                             f"backbone ({first_line(err, 300)})") from None
        self._weights = {w.path: w for w in backbone.weights}

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


def entries(names: list[str], model: dict) -> dict:
    """Our weight path -> the keras-hub weight it is copied from (as it is)."""
    from models.checkpoints.common import Entry

    ours = gpt2.entries([], model)
    found = {}
    for path in ours:
        theirs = path
        for prefix, renamed in _RENAMED.items():
            if path.startswith(prefix):
                theirs = renamed + path[len(prefix):]
        found[path] = Entry(theirs)
    return found


def tokenizer_of(checkpoint) -> tuple[dict, bytes]:
    """A GPT-2 preset's tokenizer (assets/tokenizer/vocabulary.json and merges.txt)."""
    from models.checkpoints import tokenizer_files

    assets = os.path.join(checkpoint.directory, "assets", "tokenizer")
    return tokenizer_files.byte_bpe(assets, checkpoint.vocabulary_size, {},
                                    vocabulary_file="vocabulary.json")
