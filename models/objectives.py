"""Training objectives: what the model sees and what it must predict, per model family
(`task.type` lm) or per fine-tuning task.

The trainer, the tuner and the export ask an objective to turn a packed batch into
(model inputs, targets, weights) instead of knowing each family's recipe themselves: the
loss is the weighted sum of `token_nll(logits, targets)`.
Backend-agnostic Keras: only `keras.ops`.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from models import corruption
from models.segments import causal_lm_targets


def token_nll(logits, targets):
    """Per-position negative log-likelihood in nats.

    Args:
        logits: float [B, L, V].
        targets: int [B, L].

    Returns:
        float32 [B, L].
    """
    return ops.sparse_categorical_crossentropy(
        targets, ops.cast(logits, "float32"), from_logits=True)


class CausalLMObjective:
    """Next-token prediction within each document of a packed window (GPT, llama)."""

    causal = True

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


class MaskedLMObjective:
    """BERT's masked-LM recipe (`models/corruption.py`) on packed windows.

    Args:
        vocabulary_size: the tokenizer's vocabulary size.
        special_tokens: the tokenizer artifact's special token ids by name (`mask` must be
            there); none of them is ever chosen or drawn as a random replacement.
        mask_rate, mask_token_rate, random_token_rate: the recipe's probabilities.
    """

    causal = False

    def __init__(self, vocabulary_size: int, special_tokens: dict,
                 mask_rate=corruption.MASK_RATE, mask_token_rate=corruption.MASK_TOKEN_RATE,
                 random_token_rate=corruption.RANDOM_TOKEN_RATE):
        if "mask" not in special_tokens:
            raise ValueError("a masked-LM objective needs a tokenizer with a 'mask' special "
                             f"token; this one has {sorted(special_tokens)}")
        self.mask_id = int(special_tokens["mask"])
        special = sorted({int(i) for i in special_tokens.values()})
        self.special_ids = np.array(special, np.int32)
        self.replacement_ids = np.setdiff1d(np.arange(vocabulary_size, dtype=np.int32),
                                            self.special_ids)
        self.rates = (mask_rate, mask_token_rate, random_token_rate)

    def prepare(self, batch: dict, seed=(0, 0)):
        """Corrupted inputs, the original tokens as targets, weight 1.0 where chosen.

        Args:
            batch: {token_ids int [B, L], segment_ids int [B, L], ...}.
            seed: int32 [2]; the same seed and batch give the same corruption.

        Returns:
            (inputs dict for the model, targets int32 [B, L], weights float32 [B, L]).
        """
        mask_rate, mask_token_rate, random_token_rate = self.rates
        corrupted, targets, weights = corruption.mask_tokens(
            batch["token_ids"], batch["segment_ids"], seed, self.mask_id, self.special_ids,
            self.replacement_ids, mask_rate, mask_token_rate, random_token_rate)
        segment_ids = ops.convert_to_tensor(batch["segment_ids"])
        return {"token_ids": corrupted, "segment_ids": segment_ids}, targets, weights


class ClassificationObjective:
    """One label per example (`SequenceClassifier`): the model's logits [B, C] against the
    example's `label`; examples without a known label (-1) or without tokens carry no loss."""

    causal = False

    def prepare(self, batch: dict, seed=None):
        """Inputs, targets and weights for one batch.

        Args:
            batch: {token_ids int [B, L], segment_ids int [B, L], label int [B]}.
            seed: unused (nothing is corrupted).

        Returns:
            (inputs dict for the model, targets int [B], weights float32 [B]).
        """
        labels = ops.convert_to_tensor(batch["label"])
        has_tokens = ops.any(ops.not_equal(batch["segment_ids"], 0), axis=1)
        known = ops.logical_and(ops.greater_equal(labels, 0), has_tokens)
        targets = ops.where(known, labels, ops.zeros_like(labels))
        inputs = {"token_ids": batch["token_ids"], "segment_ids": batch["segment_ids"]}
        return inputs, targets, ops.cast(known, "float32")


class TextToTextObjective:
    """The causal LM on `[bos] input separator target [eos]` with the loss on the target
    only: position i is weighted iff it predicts token i+1 of the same segment and
    `i + 1 >= target_start` (the target's first token, up to and including eos)."""

    causal = True

    def prepare(self, batch: dict, seed=None):
        """Inputs, targets and weights for one batch.

        Args:
            batch: {token_ids int [B, L], segment_ids int [B, L], target_start int [B]}.
            seed: unused (next-token prediction is deterministic).

        Returns:
            (inputs dict for the model, targets int [B, L], weights float32 [B, L]).
        """
        targets, weights = causal_lm_targets(batch["token_ids"], batch["segment_ids"])
        start = ops.convert_to_tensor(batch["target_start"])
        length = ops.shape(batch["token_ids"])[1]
        predicted = ops.arange(length, dtype=start.dtype)[None, :] + 1
        in_target = ops.cast(ops.greater_equal(predicted, start[:, None]), "float32")
        inputs = {"token_ids": batch["token_ids"], "segment_ids": batch["segment_ids"]}
        return inputs, targets, weights * in_target


def make_objective(kind: str, vocabulary_size: int | None = None,
                   special_tokens: dict | None = None):
    """The objective named `kind`.

    Args:
        kind: `causal`, `masked` (a model's `objective` attribute, or
            `ModelConfig.training_objective`), or a fine-tuning task's objective
            (`classification`, `text_to_text`).
        vocabulary_size: the tokenizer's vocabulary size (masked only).
        special_tokens: the tokenizer's special token ids by name (masked only).

    Returns:
        An object with `prepare(batch, seed) -> (inputs, targets, weights)` and `causal`.
    """
    if kind == "causal":
        return CausalLMObjective()
    if kind == "masked":
        return MaskedLMObjective(vocabulary_size, special_tokens)
    if kind in TASK_OBJECTIVES:
        return TASK_OBJECTIVES[kind]()
    raise ValueError(f"unknown objective {kind!r} (expected 'causal', 'masked', "
                     f"{', '.join(repr(k) for k in TASK_OBJECTIVES)})")


def objective_for(model_config, tokenizer_info=None, task_config=None):
    """The objective that trains `model.family` (`model.objective`) for `task.type`.

    Args:
        model_config: `pipeline.core.config.ModelConfig`.
        tokenizer_info: the tokenizer artifact's `TokenizerInfo` (needed by the masked
            objective: its mask id, special ids and vocabulary size).
        task_config: `pipeline.core.config.TaskConfig` (None: task.type lm).

    Returns:
        The objective.
    """
    if task_config is not None and task_config.type != "lm":
        return make_objective(task_config.type)
    kind = model_config.training_objective
    if tokenizer_info is None:
        if kind == "masked":
            raise ValueError(f"model.family {model_config.family!r} needs the tokenizer's "
                             "special tokens for its masked-LM objective")
        return make_objective(kind)
    return make_objective(kind, tokenizer_info.vocab_size, tokenizer_info.special_tokens)


# task.type -> the objective of a fine-tuning task.
TASK_OBJECTIVES = {"classification": ClassificationObjective,
                   "text_to_text": TextToTextObjective}
