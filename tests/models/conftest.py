"""Tiny models for the model tests."""

from __future__ import annotations

import pytest


def tiny_backbone(**overrides):
    """A 1-layer, width-16 GPT backbone over a 384-id vocabulary."""
    from models.gpt import GPTBackbone

    args = dict(vocabulary_size=384, num_layers=1, num_heads=2, hidden_dim=16,
                max_sequence_length=64)
    args.update(overrides)
    return GPTBackbone(**args)


def tiny_lm(seed: int = 0, tie_embeddings: bool = False, **overrides):
    """A seeded tiny causal LM."""
    import keras

    from models.causal_lm import CausalLM

    keras.utils.set_random_seed(seed)
    return CausalLM(tiny_backbone(**overrides), tie_embeddings=tie_embeddings)


@pytest.fixture
def packed_batch():
    """Two windows of 16: documents of lengths 5+7 (+4 padding) and 16 in one segment."""
    import numpy as np

    rng = np.random.default_rng(0)
    segments = np.array([[1] * 5 + [2] * 7 + [0] * 4, [1] * 16], np.int32)
    tokens = np.where(segments > 0, rng.integers(5, 384, segments.shape), 0).astype(np.int32)
    return {"token_ids": tokens, "segment_ids": segments}


FAMILIES = ("gpt", "llama", "bert")

# The special ids of `lm_data.write_tokenizer`'s tokenizer (pad, unk, bos, eos, mask).
SPECIAL_TOKENS = {"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4}


def tiny_model(family: str, seed: int = 0, vocabulary_size: int = 384, **overrides):
    """A seeded tiny task model of `family`, built from config as the trainer builds it."""
    import keras

    from models.factory import build_model
    from pipeline.core.config import ModelConfig, TaskConfig

    args = dict(family=family, num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=64)
    args.update(overrides)
    keras.utils.set_random_seed(seed)
    return build_model(ModelConfig(**args), TaskConfig(), vocabulary_size)
