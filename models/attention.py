"""Causal grouped-query self-attention with rotary positions and a key/value cache.

Backend-agnostic Keras 3 (`keras.ops` only). `keras.layers.GroupQueryAttention` has no
cache, so the layer is written out: `num_heads` query heads share `num_key_value_heads`
key/value heads in groups of `num_heads // num_key_value_heads` (query head h reads
key/value head h // group), as in Llama 2 / 3. With `num_key_value_heads == num_heads` it
is plain multi-head attention. No biases.
"""

from __future__ import annotations

import math

import keras
import keras_hub
from keras import ops

# Added to the scores of masked keys; finite, so a query with no visible key (a fully
# padded row) gets uniform weights instead of NaN.
_MASKED = -1e9


@keras.saving.register_keras_serializable(package="lmpipe")
class CachedGroupedQueryAttention(keras.layers.Layer):
    """x [B, T, hidden_dim] -> [B, T, hidden_dim], causal, optionally with a cache.

    Args:
        num_heads: query heads.
        num_key_value_heads: key/value heads; must divide `num_heads`.
        head_dim: width of each head (even: rotary positions rotate pairs of features).
        rope_max_wavelength: base of the rotary frequencies.
        dropout: dropout rate on the attention weights.
        kernel_initializer: initializer of the four projections.
    """

    def __init__(self, num_heads, num_key_value_heads, head_dim, rope_max_wavelength=10_000.0,
                 dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if num_heads % num_key_value_heads:
            raise ValueError(f"num_key_value_heads ({num_key_value_heads}) must divide "
                             f"num_heads ({num_heads})")
        self.num_heads = num_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.rope_max_wavelength = rope_max_wavelength
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]

        def projection(name, equation, shape):
            return keras.layers.EinsumDense(
                equation, output_shape=shape, kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy, name=name)

        self.query_dense = projection("query", "btd,dhk->bthk",
                                      (None, self.num_heads, self.head_dim))
        self.key_dense = projection("key", "btd,dhk->bthk",
                                    (None, self.num_key_value_heads, self.head_dim))
        self.value_dense = projection("value", "btd,dhk->bthk",
                                      (None, self.num_key_value_heads, self.head_dim))
        self.output_dense = projection("attention_output", "bthk,hkd->btd", (None, hidden_dim))
        self.query_dense.build(inputs_shape)
        self.key_dense.build(inputs_shape)
        self.value_dense.build(inputs_shape)
        self.output_dense.build((None, None, self.num_heads, self.head_dim))
        self.rotary = keras_hub.layers.RotaryEmbedding(
            max_wavelength=self.rope_max_wavelength, dtype=self.dtype_policy, name="rotary")
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy,
                                                  name="attention_dropout")
        self.built = True

    def call(self, x, attention_mask=None, cache=None, cache_update_index=0, training=None):
        """Attend causally over the sequence (or over the cache plus the new tokens).

        Args:
            x: [B, T, hidden_dim], the tokens at positions `cache_update_index` + 0..T-1.
            attention_mask: optional bool [B, T, S] of allowed (query, key) pairs beyond
                causality (e.g. same document); S = T without a cache, the cache length
                with one.
            cache: optional [B, 2, S, num_key_value_heads, head_dim] keys and values.
            cache_update_index: the position of `x[:, 0]` (and where it goes in the cache).
            training: enables dropout.

        Returns:
            [B, T, hidden_dim], and the updated cache when one was given.
        """
        query = self.rotary(self.query_dense(x), start_index=cache_update_index)
        key = self.rotary(self.key_dense(x), start_index=cache_update_index)
        value = self.value_dense(x)
        if cache is not None:
            start = [0, cache_update_index, 0, 0]
            key = ops.slice_update(cache[:, 0], start, key)
            value = ops.slice_update(cache[:, 1], start, value)
            cache = ops.stack([key, value], axis=1)
        mask = _causal_mask(ops.shape(x)[1], ops.shape(key)[1], cache_update_index)
        if attention_mask is not None:
            mask = ops.logical_and(mask, attention_mask)
        output = self.output_dense(self._attend(query, key, value, mask, training))
        return output if cache is None else (output, cache)

    def _attend(self, query, key, value, mask, training):
        """Grouped attention: query [B,T,H,D], key/value [B,S,K,D], mask [B|1,T,S]."""
        batch, length = ops.shape(query)[0], ops.shape(query)[1]
        group = self.num_heads // self.num_key_value_heads
        query = ops.reshape(query, (batch, length, self.num_key_value_heads, group, self.head_dim))
        scores = ops.einsum("btkgd,bskd->bkgts", query, key)
        # Softmax in float32 whatever the compute dtype (mixed precision).
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_dim)
        scores = ops.where(mask[:, None, None, :, :], scores, _MASKED)
        weights = self.dropout_layer(ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype),
                                     training=training)
        attended = ops.einsum("bkgts,bskd->btkgd", weights, value)
        return ops.reshape(attended, (batch, length, self.num_heads, self.head_dim))

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rope_max_wavelength": self.rope_max_wavelength,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config


def _causal_mask(query_length, key_length, start):
    """bool [1, T, S]: query t (at position start + t) may see keys 0 .. start + t."""
    query_positions = ops.arange(query_length) + start
    visible = ops.less_equal(ops.arange(key_length)[None, :], query_positions[:, None])
    return ops.expand_dims(visible, 0)
