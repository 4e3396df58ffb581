"""The sequence classifier: a backbone, a pooling of its states, a logits head.

Backend-agnostic Keras 3, in the shape of keras-hub's classifiers: the model owns only the
pooling and the head and takes its backbone as a constructor argument
(`models.backbone.BackboneWithHead`), so a pretrained backbone (`train.warm_start`) is
reused as it is.
"""

from __future__ import annotations

import keras
from keras import ops

from models.backbone import BackboneWithHead


@keras.saving.register_keras_serializable(package="lmpipe")
class SequencePooling(keras.layers.Layer):
    """Hidden states [B, L, H] and segment ids [B, L] -> one vector per sequence [B, H].

    Args:
        mode: `last` (the state at the last position whose segment id is not 0) or `mean`
            (the mean over those positions). An all-padding row pools to zeros.
    """

    def __init__(self, mode: str = "last", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("last", "mean"):
            raise ValueError(f"pooling mode must be 'last' or 'mean', got {mode!r}")
        self.mode = mode

    def call(self, hidden, segment_ids):
        real = ops.not_equal(segment_ids, 0)
        if self.mode == "mean":
            weights = ops.cast(real, hidden.dtype)[:, :, None]
            count = ops.maximum(ops.sum(weights, axis=1), 1.0)
            return ops.sum(hidden * weights, axis=1) / count
        positions = ops.arange(ops.shape(segment_ids)[1], dtype="int32")[None, :]
        last = ops.max(ops.where(real, positions, 0), axis=1)
        pooled = ops.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0, :]
        return pooled * ops.cast(ops.any(real, axis=1), hidden.dtype)[:, None]

    def compute_output_shape(self, hidden_shape, segment_ids_shape=None):
        return (hidden_shape[0], hidden_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="lmpipe")
class SequenceClassifier(BackboneWithHead):
    """{token_ids, segment_ids} -> class logits [B, num_classes].

    Args:
        backbone: any lmpipe backbone ({token_ids, segment_ids} -> hidden [B, L, H]).
        num_classes: the number of labels.
        pooling: `last` or `mean` (see `SequencePooling`).
        dropout: dropout on the pooled vector.
    """

    # What it is trained on (`models.objectives.make_objective`).
    objective = "classification"

    def __init__(self, backbone, num_classes, pooling="last", dropout=0.0, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.pooling = SequencePooling(pooling, dtype=backbone.dtype_policy, name="pooling")
        self.head_dropout = keras.layers.Dropout(dropout, dtype=backbone.dtype_policy,
                                                 name="head_dropout")
        self.head = keras.layers.Dense(
            num_classes, dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02), name="head")

        # === Functional model ===
        inputs = backbone.input
        pooled = self.pooling(backbone(inputs), inputs["segment_ids"])
        logits = self.head(self.head_dropout(pooled))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.pooling_mode = pooling
        self.dropout = dropout

    def head_variables(self) -> list:
        """The variables that are not the backbone's (what trains while it is frozen)."""
        backbone = {id(v) for v in self.backbone.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in backbone]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "pooling": self.pooling_mode, "dropout": self.dropout}
