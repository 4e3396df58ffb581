"""What every backbone and every model on a backbone share (backend-agnostic Keras 3).

A backbone (`models.gpt`, `models.llama`, `models.bert`) takes the inputs of
`backbone_inputs` and returns hidden states; its config is exactly its constructor's
arguments. A model on a backbone (`CausalLM`, `MaskedLM`, `SequenceClassifier`) adds a
head, takes its backbone as a constructor argument, as keras-hub's models do, and keeps
the serialized backbone in its config.
"""

from __future__ import annotations

import inspect

import keras


def backbone_inputs() -> dict:
    """The inputs of every backbone: {token_ids, segment_ids}, int32 [B, L], L unknown."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in ("token_ids", "segment_ids")}


class Backbone(keras.Model):
    """A functional backbone whose config is its constructor's arguments.

    Every constructor argument but `dtype` and `**kwargs` is kept as an attribute of the
    same name, so `get_config` reads them back and `from_config` rebuilds the same graph.
    """

    def get_config(self):
        parameters = inspect.signature(type(self).__init__).parameters
        config = {"name": self.name, "trainable": self.trainable}
        config.update({name: getattr(self, name) for name in parameters
                       if name not in ("self", "dtype", "kwargs")})
        if self.dtype_policy.name != keras.config.dtype_policy().name:
            config["dtype"] = keras.saving.serialize_keras_object(self.dtype_policy)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class BackboneWithHead(keras.Model):
    """A functional model made of a backbone and a head.

    Subclasses add their head's arguments to `get_config`.
    """

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
