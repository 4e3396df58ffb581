"""A GPT-style decoder backbone: learned positions, pre-LayerNorm blocks, GELU MLP.

Backend-agnostic Keras 3 (keras-hub layers, `keras.ops`), in the shape of keras-hub's
`GPT2Backbone`: every hyperparameter is one constructor argument and `get_config()`
returns exactly those arguments (`models.backbone.Backbone`), so `from_config` rebuilds
the same functional graph.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from models.backbone import Backbone, backbone_inputs
from models.segments import document_attention_mask, padding_mask


def _init(stddev: float = 0.02):
    return keras.initializers.RandomNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="lmpipe")
class GPTBackbone(Backbone):
    """Token ids and segment ids in, final hidden states [B, L, hidden_dim] out.

    Args:
        vocabulary_size: number of token ids.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block (must divide `hidden_dim`).
        hidden_dim: width of the residual stream.
        intermediate_dim: width of the MLP; None means 4 * hidden_dim.
        max_sequence_length: number of learned positions (the longest input).
        dropout: dropout rate in attention, MLP and after the embeddings.
        document_masking: when True, a position attends only to earlier positions of its
            own segment (packed documents stay independent); when False, to every earlier
            non-padding position.
        layer_norm_epsilon: epsilon of every LayerNorm.
        dtype: dtype or `keras.DTypePolicy` of the layers.
    """

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim,
                 intermediate_dim=None, max_sequence_length=512, dropout=0.0,
                 document_masking=True, layer_norm_epsilon=1e-5, dtype=None, **kwargs):
        mlp_dim = intermediate_dim or 4 * hidden_dim
        # === Layers ===
        self.embeddings = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size, sequence_length=max_sequence_length,
            embedding_dim=hidden_dim, embeddings_initializer=_init(), dtype=dtype,
            name="embeddings")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype,
                                                       name="embeddings_dropout")
        self.transformer_layers = [
            keras_hub.layers.TransformerDecoder(
                intermediate_dim=mlp_dim, num_heads=num_heads, dropout=dropout,
                activation="gelu", layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=_init(), normalize_first=True, dtype=dtype,
                name=f"transformer_layer_{i}")
            for i in range(num_layers)
        ]
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                                          name="layer_norm")

        # === Functional model ===
        inputs = backbone_inputs()
        segment_ids = inputs["segment_ids"]
        x = self.embeddings_dropout(self.embeddings(inputs["token_ids"]))
        if document_masking:
            masks = {"decoder_attention_mask": document_attention_mask(segment_ids)}
        else:
            masks = {"decoder_padding_mask": padding_mask(segment_ids)}
        for layer in self.transformer_layers:
            x = layer(x, **masks)
        outputs = self.layer_norm(x)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.dropout = dropout
        self.document_masking = document_masking
        self.layer_norm_epsilon = layer_norm_epsilon

    @property
    def token_embedding(self):
        """The token embedding (a `ReversibleEmbedding`, usable as a tied output head)."""
        return self.embeddings.token_embedding

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def cache_shape(self, batch_size, max_length) -> list:
        """[B, num_layers, 2 (key, value), max_length, num_heads, head_dim]."""
        return [batch_size, self.num_layers, 2, max_length, self.num_heads, self.head_dim]

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Hidden states of `token_ids` placed at `cache_update_index`, reading and
        updating the key/value cache (one document, causal attention only).

        Args:
            token_ids: int [B, T], the tokens at positions index .. index + T - 1.
            cache: float, `cache_shape(B, max_length)`.
            cache_update_index: int scalar, the position of `token_ids[:, 0]`.

        Returns:
            (hidden states [B, T, hidden_dim], updated cache).
        """
        x = self.embeddings(token_ids, start_index=cache_update_index)
        caches = []
        for i, layer in enumerate(self.transformer_layers):
            x, layer_cache = layer(x, self_attention_cache=cache[:, i, ...],
                                   self_attention_cache_update_index=cache_update_index)
            caches.append(layer_cache)
        return self.layer_norm(x), ops.stack(caches, axis=1)
