"""A BERT-style encoder backbone: learned positions, post-LayerNorm bidirectional blocks.

Backend-agnostic Keras 3 in the shape of keras-hub's `BertBackbone` (token and position
embeddings, LayerNorm, dropout, `TransformerEncoder` blocks), without the pooler, which
only next-sentence prediction and BERT's own classifier use. The token-type embedding is
there only for an imported BERT checkpoint (`num_token_types`): lmpipe's inputs have one
segment type, so BERT's row 0 is added at every position, as BERT computes it for a
single sentence. Every hyperparameter is one constructor argument and `get_config()`
returns exactly those (`models.backbone.Backbone`).
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from models.backbone import Backbone, backbone_inputs
from models.gpt import ACTIVATIONS
from models.segments import document_attention_mask, padding_mask


def _init(stddev: float = 0.02):
    return keras.initializers.TruncatedNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="lmpipe")
class BertBackbone(Backbone):
    """Token ids and segment ids in, contextual hidden states [B, L, hidden_dim] out.

    Args:
        vocabulary_size: number of token ids.
        num_layers: number of encoder blocks.
        num_heads: attention heads per block (must divide `hidden_dim`).
        hidden_dim: width of the residual stream.
        intermediate_dim: width of the MLP; None means 4 * hidden_dim.
        max_sequence_length: number of learned positions (the longest input).
        dropout: dropout rate in attention, MLP and after the embeddings.
        document_masking: when True, a position attends to every position of its own
            segment (before and after it) and nothing else; when False, to every
            non-padding position of the window.
        layer_norm_epsilon: epsilon of every LayerNorm.
        num_token_types: rows of a token-type embedding whose row 0 is added to every
            position (a BERT checkpoint's `type_vocab_size`); None: no such embedding.
        activation: the MLP's `gelu` (exact, erf: BERT's) or `gelu_approximate` (tanh:
            the encoder blocks of keras-hub's `BertBackbone`).
        head_layer_norm_epsilon: epsilon of the LayerNorm of a masked-LM head on this
            backbone (`models.masked_lm.MaskedLM`); None: `layer_norm_epsilon` (keras-hub's
            `BertMaskedLM` head keeps its own default, 1e-5).
        dtype: dtype or `keras.DTypePolicy` of the layers.
    """

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim,
                 intermediate_dim=None, max_sequence_length=512, dropout=0.0,
                 document_masking=True, layer_norm_epsilon=1e-12, num_token_types=None,
                 activation="gelu", head_layer_norm_epsilon=None, dtype=None, **kwargs):
        # === Layers ===
        self.embeddings = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size, sequence_length=max_sequence_length,
            embedding_dim=hidden_dim, embeddings_initializer=_init(), dtype=dtype,
            name="embeddings")
        self.token_type_embedding = None
        if num_token_types:
            self.token_type_embedding = keras.layers.Embedding(
                num_token_types, hidden_dim, embeddings_initializer=_init(), dtype=dtype,
                name="token_type_embedding")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype,
                                                       name="embeddings_dropout")
        self.transformer_layers = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=intermediate_dim or 4 * hidden_dim, num_heads=num_heads,
                dropout=dropout, activation=ACTIVATIONS[activation],
                layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=_init(), dtype=dtype, name=f"transformer_layer_{i}")
            for i in range(num_layers)
        ]

        # === Functional model ===
        inputs = backbone_inputs()
        segment_ids = inputs["segment_ids"]
        x = self.embeddings(inputs["token_ids"])
        if self.token_type_embedding is not None:
            x = x + self.token_type_embedding(ops.zeros_like(inputs["token_ids"]))
        x = self.embeddings_dropout(self.embeddings_layer_norm(x))
        if document_masking:
            masks = {"attention_mask": document_attention_mask(segment_ids)}
        else:
            masks = {"padding_mask": padding_mask(segment_ids)}
        for layer in self.transformer_layers:
            x = layer(x, **masks)
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

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
        self.num_token_types = num_token_types
        self.activation = activation
        self.head_layer_norm_epsilon = head_layer_norm_epsilon

    @property
    def token_embedding(self):
        """The token embedding (a `ReversibleEmbedding`, the masked-LM head's output)."""
        return self.embeddings.token_embedding
