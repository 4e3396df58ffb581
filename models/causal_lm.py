"""The causal language model: a backbone plus a logits head.

Backend-agnostic Keras 3, in the shape of keras-hub's `CausalLM`: the model owns only the
head and takes its backbone as a constructor argument (`models.backbone.BackboneWithHead`;
tokenizer and preprocessing live elsewhere: `models/tokenizer.py`,
`components/train/data.py`, `models/export.py`).
"""

from __future__ import annotations

import keras

from models.backbone import BackboneWithHead


@keras.saving.register_keras_serializable(package="lmpipe")
class CausalLM(BackboneWithHead):
    """{token_ids, segment_ids} -> next-token logits [B, L, vocabulary_size].

    Args:
        backbone: a causal backbone with `token_embedding`, `vocabulary_size`,
            `empty_cache` and `call_with_cache` (`models.gpt.GPTBackbone`,
            `models.llama.LlamaBackbone`).
        tie_embeddings: when True the head is the transposed token embedding; when False
            (the default) it is its own projection.
    """

    # What it is trained on and scored by (`models.objectives.make_objective`).
    objective = "causal"

    def __init__(self, backbone, tie_embeddings=False, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.lm_head = None
        if not tie_embeddings:
            self.lm_head = keras.layers.Dense(
                backbone.vocabulary_size, use_bias=False, dtype=backbone.dtype_policy,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.02), name="lm_head")

        # === Functional model ===
        inputs = backbone.input
        logits = self._logits(backbone(inputs))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.tie_embeddings = tie_embeddings

    def _logits(self, hidden):
        if self.lm_head is None:
            return self.backbone.token_embedding(hidden, reverse=True)
        return self.lm_head(hidden)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Logits for `token_ids` at `cache_update_index`, with the key/value cache.

        Args:
            token_ids: int [B, T].
            cache: the key/value cache (`empty_cache`).
            cache_update_index: int scalar, the position of `token_ids[:, 0]`.

        Returns:
            (logits [B, T, vocabulary_size], updated cache).
        """
        hidden, cache = self.backbone.call_with_cache(token_ids, cache, cache_update_index)
        return self._logits(hidden), cache

    def empty_cache(self, batch_size, max_length):
        """A zero key/value cache for `batch_size` sequences of up to `max_length` tokens,
        in the backbone's layout (`call_with_cache` takes and returns it)."""
        return self.backbone.empty_cache(batch_size, max_length, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "tie_embeddings": self.tie_embeddings}
