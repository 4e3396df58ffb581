"""Training objectives: what the model sees and what it must predict, per model family.

The trainer, the tuner and the export ask an objective to turn a packed batch into
(model inputs, targets, weights) instead of knowing each family's recipe themselves.
Backend-agnostic Keras: only `keras.ops`.
"""

from __future__ import annotations

from models.masking import causal_lm_targets


class CausalLMObjective:
    """Next-token prediction within each document of a packed window (GPT, llama)."""

    def prepare(self, batch: dict, seed=None):
        """Inputs, targets and weights for one batch.

        Args:
            batch: {token_ids int [B, L], segment_ids int [B, L], ...}.
            seed: int32 [2] stateless seed for objectives that corrupt their inputs
                (unused here: next-token prediction is deterministic).

        Returns:
            (inputs dict for the model, targets int [B, L], weights float32 [B, L]).
        """
        targets, weights = causal_lm_targets(batch["token_ids"], batch["segment_ids"])
        return {"token_ids": batch["token_ids"], "segment_ids": batch["segment_ids"]}, targets, weights


def objective_for(model_config):
    """The objective that trains `model.family`."""
    return CausalLMObjective()
