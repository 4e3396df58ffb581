"""A Llama-style decoder backbone: rotary positions, RMSNorm, SwiGLU MLP, grouped-query
attention, no biases.

Backend-agnostic Keras 3 in the shape of `models/gpt.py` (and keras-hub's
`LlamaBackbone`): every hyperparameter is one constructor argument and `get_config()`
returns exactly those arguments (`models.backbone.Backbone`). The attention layer (`models/attention.py`) carries a
key/value cache of `num_key_value_heads` heads for generation.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from models.attention import CachedGroupedQueryAttention
from models.backbone import Backbone, backbone_inputs
from models.segments import document_attention_mask, padding_mask


def _init(stddev: float = 0.02):
    return keras.initializers.RandomNormal(stddev=stddev)


def swiglu_width(hidden_dim: int) -> int:
    """Llama's default MLP width: 8/3 * hidden_dim rounded up to a multiple of 8 (three
    matrices of this width hold about as many weights as a 4 * hidden_dim GELU MLP)."""
    return 8 * -(-hidden_dim // 3)


@keras.saving.register_keras_serializable(package="lmpipe")
class LlamaDecoderBlock(keras.layers.Layer):
    """x + attention(rmsnorm(x)), then x + swiglu(rmsnorm(x)).

    Args:
        num_heads: query heads.
        num_key_value_heads: key/value heads (divides `num_heads`).
        intermediate_dim: width of the SwiGLU MLP.
        rope_max_wavelength: base of the rotary frequencies.
        dropout: dropout on the attention weights and on each residual branch.
        layer_norm_epsilon: epsilon of the RMSNorms.
        kernel_initializer: initializer of every projection.
    """

    def __init__(self, num_heads, num_key_value_heads, intermediate_dim,
                 rope_max_wavelength=10_000.0, dropout=0.0, layer_norm_epsilon=1e-6,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.num_key_value_heads = num_key_value_heads
        self.intermediate_dim = intermediate_dim
        self.rope_max_wavelength = rope_max_wavelength
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        common = {"dtype": self.dtype_policy}
        dense = {"use_bias": False, "kernel_initializer": self.kernel_initializer, **common}
        self.attention_norm = keras.layers.RMSNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", **common)
        self.attention = CachedGroupedQueryAttention(
            self.num_heads, self.num_key_value_heads, hidden_dim // self.num_heads,
            rope_max_wavelength=self.rope_max_wavelength, dropout=self.dropout,
            kernel_initializer=self.kernel_initializer, name="attention", **common)
        self.mlp_norm = keras.layers.RMSNormalization(
            epsilon=self.layer_norm_epsilon, name="mlp_norm", **common)
        self.gate = keras.layers.Dense(self.intermediate_dim, name="gate", **dense)
        self.up = keras.layers.Dense(self.intermediate_dim, name="up", **dense)
        self.down = keras.layers.Dense(hidden_dim, name="down", **dense)
        self.residual_dropout = keras.layers.Dropout(self.dropout, name="residual_dropout",
                                                     **common)
        for layer in (self.attention_norm, self.attention, self.mlp_norm, self.gate, self.up):
            layer.build(inputs_shape)
        self.down.build((*inputs_shape[:-1], self.intermediate_dim))
        self.built = True

    def call(self, x, attention_mask=None, cache=None, cache_update_index=0, training=None):
        """One block; with `cache` (see `CachedGroupedQueryAttention.call`) also returns
        the updated cache."""
        attended = self.attention(self.attention_norm(x), attention_mask=attention_mask,
                                  cache=cache, cache_update_index=cache_update_index,
                                  training=training)
        if cache is not None:
            attended, cache = attended
        x = x + self.residual_dropout(attended, training=training)
        h = self.mlp_norm(x)
        mlp = self.down(ops.silu(self.gate(h)) * self.up(h))
        x = x + self.residual_dropout(mlp, training=training)
        return x if cache is None else (x, cache)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "intermediate_dim": self.intermediate_dim,
            "rope_max_wavelength": self.rope_max_wavelength,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package="lmpipe")
class LlamaBackbone(Backbone):
    """Token ids and segment ids in, final hidden states [B, L, hidden_dim] out.

    Args:
        vocabulary_size: number of token ids.
        num_layers: number of decoder blocks.
        num_heads: query heads per block (must divide `hidden_dim`, with an even quotient).
        hidden_dim: width of the residual stream.
        num_key_value_heads: key/value heads per block (grouped-query attention); None
            means `num_heads`.
        intermediate_dim: width of the SwiGLU MLP; None means `swiglu_width(hidden_dim)`.
        max_sequence_length: the longest input the model is meant for (rotary positions
            need no table; the export's window and cache are bounded by it).
        rope_max_wavelength: base of the rotary frequencies.
        dropout: dropout rate in attention, MLP and after the embeddings.
        document_masking: when True, a position attends only to earlier positions of its
            own segment; when False, to every earlier non-padding position.
        layer_norm_epsilon: epsilon of every RMSNorm.
        dtype: dtype or `keras.DTypePolicy` of the layers.
    """

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim,
                 num_key_value_heads=None, intermediate_dim=None, max_sequence_length=512,
                 rope_max_wavelength=10_000.0, dropout=0.0, document_masking=True,
                 layer_norm_epsilon=1e-6, dtype=None, **kwargs):
        # === Layers ===
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, hidden_dim, embeddings_initializer=_init(), dtype=dtype,
            name="token_embedding")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype,
                                                       name="embeddings_dropout")
        self.transformer_layers = [
            LlamaDecoderBlock(
                num_heads, num_key_value_heads or num_heads,
                intermediate_dim or swiglu_width(hidden_dim),
                rope_max_wavelength=rope_max_wavelength, dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon, kernel_initializer=_init(), dtype=dtype,
                name=f"transformer_layer_{i}")
            for i in range(num_layers)
        ]
        self.layer_norm = keras.layers.RMSNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                                        name="layer_norm")

        # === Functional model ===
        inputs = backbone_inputs()
        segment_ids = inputs["segment_ids"]
        x = self.embeddings_dropout(self.token_embedding(inputs["token_ids"]))
        if document_masking:
            mask = document_attention_mask(segment_ids)
        else:
            mask = ops.expand_dims(padding_mask(segment_ids), 1)
        for layer in self.transformer_layers:
            x = layer(x, attention_mask=mask)
        outputs = self.layer_norm(x)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.num_key_value_heads = num_key_value_heads
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.rope_max_wavelength = rope_max_wavelength
        self.dropout = dropout
        self.document_masking = document_masking
        self.layer_norm_epsilon = layer_norm_epsilon

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def empty_cache(self, batch_size, max_length, dtype="float32") -> list:
        """A zero key/value cache: per layer one [B, 2 (key, value), max_length,
        key/value heads, head_dim] tensor (`CachedGroupedQueryAttention`'s layout)."""
        shape = [batch_size, 2, max_length, self.num_key_value_heads or self.num_heads,
                 self.head_dim]
        return [ops.zeros(shape, dtype) for _ in range(self.num_layers)]

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Hidden states of `token_ids` placed at `cache_update_index`, reading and
        updating the key/value cache (one document, causal attention only).

        Args:
            token_ids: int [B, T], the tokens at positions index .. index + T - 1.
            cache: `empty_cache(B, max_length)` or what the last call returned.
            cache_update_index: int scalar, the position of `token_ids[:, 0]`.

        Returns:
            (hidden states [B, T, hidden_dim], the updated list).
        """
        x = self.token_embedding(token_ids)
        caches = []
        for layer, layer_cache in zip(self.transformer_layers, cache):
            x, layer_cache = layer(x, cache=layer_cache, cache_update_index=cache_update_index)
            caches.append(layer_cache)
        return self.layer_norm(x), caches
