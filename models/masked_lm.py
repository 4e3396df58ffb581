"""The masked language model (BERT's `BertForMaskedLM`): an encoder plus an MLM head.

Backend-agnostic Keras 3, in the shape of keras-hub's `BertMaskedLM`: the model owns only
the head (`keras_hub.layers.MaskedLMHead`: dense + GELU + LayerNorm, then the transposed
token embedding and a bias) and takes its backbone as a constructor argument
(`models.backbone.BackboneWithHead`). Which positions are masked, and how, is the
objective's business (`models/corruption.py`); the model returns logits at every position
so that causal and masked LMs share one contract with the trainer and the export:
{token_ids, segment_ids} -> logits [B, L, vocabulary_size].
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from models.backbone import BackboneWithHead


class _MaskedLMHead(keras_hub.layers.MaskedLMHead):
    """keras-hub's `MaskedLMHead`, with its float32 variables cast to the compute dtype.

    keras-hub 0.32's head turns Keras' autocasting off and adds its float32 bias to
    bfloat16/float16 logits as is, which fails under a mixed-precision policy; the
    computation is otherwise the same.
    """

    def call(self, inputs, mask_positions):
        x = ops.take_along_axis(inputs, ops.expand_dims(mask_positions, axis=-1), axis=1)
        x = self._intermediate_layer_norm(self._intermediate_dense(x))
        if self.token_embedding:
            outputs = self.token_embedding(x, reverse=True)
        else:
            outputs = ops.matmul(x, ops.cast(self._kernel, self.compute_dtype))
        outputs = ops.cast(outputs, self.compute_dtype) + ops.cast(self._bias, self.compute_dtype)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="lmpipe")
class MaskedLM(BackboneWithHead):
    """{token_ids, segment_ids} -> logits [B, L, vocabulary_size] for every position.

    Args:
        backbone: a bidirectional backbone with `token_embedding`, `vocabulary_size` and
            `layer_norm_epsilon` (e.g. `models.bert.BertBackbone`); the head's LayerNorm
            takes the backbone's `head_layer_norm_epsilon` when it has one set (a KerasHub
            BERT preset's head), else `layer_norm_epsilon`.
        tie_embeddings: when True (BERT's choice) the head's output projection is the
            transposed token embedding; when False it is its own matrix.
    """

    # What it is trained on and scored by (`models.objectives.make_objective`).
    objective = "masked"

    def __init__(self, backbone, tie_embeddings=True, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.mlm_head = _MaskedLMHead(
            vocabulary_size=backbone.vocabulary_size,
            token_embedding=backbone.token_embedding if tie_embeddings else None,
            intermediate_activation="gelu",
            layer_norm_epsilon=(getattr(backbone, "head_layer_norm_epsilon", None)
                                or backbone.layer_norm_epsilon),
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=backbone.dtype_policy, name="mlm_head")

        # === Functional model ===
        inputs = backbone.input
        hidden = backbone(inputs)
        # The head gathers the positions it predicts; here that is all of them (the
        # objective's weights pick the masked ones), 0 .. L-1 built from a tensor so
        # the window length may stay unknown.
        positions = ops.cumsum(ops.ones_like(inputs["segment_ids"]), axis=1) - 1
        logits = self.mlm_head(hidden, mask_positions=positions)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.tie_embeddings = tie_embeddings

    def get_config(self):
        return {**super().get_config(), "tie_embeddings": self.tie_embeddings}
