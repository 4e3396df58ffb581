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


# Added to the scores of keys a query may not see (keras' masked softmax adds the same).
_MASKED = -1e9


def _init(stddev: float = 0.02):
    return keras.initializers.RandomNormal(stddev=stddev)


def _gelu_approximate(x):
    return keras.activations.gelu(x, approximate=True)


# `activation` -> the MLP's function (the name is what the config keeps).
ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": _gelu_approximate}


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
        activation: the MLP's `gelu` (exact, erf) or `gelu_approximate` (tanh, GPT-2's
            `gelu_new`: an imported GPT-2 computes what it was trained with).
        dtype: dtype or `keras.DTypePolicy` of the layers.
    """

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim,
                 intermediate_dim=None, max_sequence_length=512, dropout=0.0,
                 document_masking=True, layer_norm_epsilon=1e-5, activation="gelu", dtype=None,
                 **kwargs):
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
                activation=ACTIVATIONS[activation], layer_norm_epsilon=layer_norm_epsilon,
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
        self.activation = activation

    @property
    def token_embedding(self):
        """The token embedding (a `ReversibleEmbedding`, usable as a tied output head)."""
        return self.embeddings.token_embedding

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def empty_cache(self, batch_size, max_length, dtype="float32") -> list:
        """A zero key/value cache: per layer a (keys, values) pair, each
        [B, num_heads, max_length, head_dim] (heads before positions, the layout the
        attention's batched matmuls read without a transpose)."""
        shape = [batch_size, self.num_heads, max_length, self.head_dim]
        return [(ops.zeros(shape, dtype), ops.zeros(shape, dtype))
                for _ in range(self.num_layers)]

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Hidden states of `token_ids` placed at `cache_update_index`, reading and
        updating the key/value cache (one document, causal attention only).

        The blocks' weights are keras-hub's `TransformerDecoder` sublayers, applied here
        step by step (`_block_with_cache`) rather than through the layer's cached call:
        its cache is one stacked [B, 2, S, heads, head_dim] tensor per layer, which every
        step copies whole (the stack) and transposes for the attention's matmuls, and at
        one new token per step that copying, not arithmetic, was the decoding time
        (bench/NOTES.md, generation).

        Args:
            token_ids: int [B, T], the tokens at positions index .. index + T - 1.
            cache: `empty_cache(B, max_length)` or what the last call returned.
            cache_update_index: int scalar, the position of `token_ids[:, 0]`.

        Returns:
            (hidden states [B, T, hidden_dim], the updated cache).
        """
        x = self.embeddings(token_ids, start_index=cache_update_index)
        length = ops.shape(token_ids)[1]
        cache_length = ops.shape(cache[0][0])[2]
        # [1, 1, T, S]: query t (at position index + t) sees keys 0 .. index + t.
        visible = ops.less_equal(ops.arange(cache_length)[None, :],
                                 ops.arange(length)[:, None] + cache_update_index)[None, None]
        caches = []
        for layer, layer_cache in zip(self.transformer_layers, cache):
            x, layer_cache = _block_with_cache(layer, x, layer_cache, cache_update_index,
                                               visible)
            caches.append(layer_cache)
        return self.layer_norm(x), caches


def _block_with_cache(layer, x, cache, index, visible):
    """One pre-LayerNorm `keras_hub.layers.TransformerDecoder` on new tokens x [B, T, d]
    at positions index.., with the (keys, values) [B, H, S, D] of earlier positions;
    inference only (no dropout). The same arithmetic as the layer's own call
    (`tests/models/test_gpt.py` checks the logits against the full forward pass)."""
    attention = layer._self_attention_layer
    h = layer._self_attention_layer_norm(x)
    query = ops.transpose(attention._query_dense(h), (0, 2, 1, 3))
    start = [0, 0, index, 0]
    keys = ops.slice_update(cache[0], start, ops.transpose(attention._key_dense(h), (0, 2, 1, 3)))
    values = ops.slice_update(cache[1], start,
                              ops.transpose(attention._value_dense(h), (0, 2, 1, 3)))
    query = query * ops.cast(attention._inverse_sqrt_key_dim, query.dtype)
    scores = ops.where(visible, ops.matmul(query, ops.transpose(keys, (0, 1, 3, 2))), _MASKED)
    weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), values.dtype)
    attended = ops.transpose(ops.matmul(weights, values), (0, 2, 1, 3))
    x = x + attention._output_dense(attended)
    h = layer._feedforward_layer_norm(x)
    x = x + layer._feedforward_output_dense(layer._feedforward_intermediate_dense(h))
    return x, (keys, values)
