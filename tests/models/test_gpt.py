"""The GPT backbone and the causal LM task: config round trip, saving, cached decoding."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from tests.models.conftest import tiny_backbone, tiny_lm


def test_backbone_config_mirrors_constructor_and_round_trips():
    from models.gpt import GPTBackbone

    backbone = tiny_backbone(intermediate_dim=24, dropout=0.1, document_masking=False)
    config = backbone.get_config()
    params = set(inspect.signature(GPTBackbone.__init__).parameters) - {"self", "kwargs", "dtype"}
    assert params == set(config) - {"name", "trainable"}
    assert config["intermediate_dim"] == 24 and config["document_masking"] is False
    assert GPTBackbone.from_config(config).get_config() == config


@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_keras_file_reloads_with_identical_logits(tmp_path, packed_batch, tie_embeddings):
    import keras

    model = tiny_lm(seed=3, tie_embeddings=tie_embeddings)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(reloaded(packed_batch)),
                                  np.asarray(model(packed_batch)))


def test_tied_head_reuses_the_token_embedding():
    untied, tied = tiny_lm(), tiny_lm(tie_embeddings=True)
    assert untied.count_params() - tied.count_params() == 384 * 16
    assert tied.lm_head is None


def test_cached_decoding_matches_the_full_forward_pass():
    model = tiny_lm(seed=4)
    rng = np.random.default_rng(4)
    tokens = rng.integers(5, 384, (2, 12)).astype(np.int32)
    full = np.asarray(model({"token_ids": tokens, "segment_ids": np.ones_like(tokens)}))
    cache = model.empty_cache(2, 12)
    logits, cache = model.call_with_cache(tokens[:, :5], cache, 0)
    steps = [np.asarray(logits)]
    for i in range(5, 12):
        logits, cache = model.call_with_cache(tokens[:, i:i + 1], cache, i)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
