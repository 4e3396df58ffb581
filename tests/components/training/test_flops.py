"""Model FLOPs per token and the measured matmul peak behind MFU."""

from __future__ import annotations

import pytest

from pipeline.config import ModelConfig, TaskConfig


@pytest.mark.parametrize("tied", [False, True])
def test_flops_per_token_counts_matmul_weights_and_attention(tied):
    from components.training.flops import flops_per_token
    from models.factory import build_model

    config = ModelConfig(num_layers=2, hidden_dim=16, num_heads=2, max_sequence_length=64,
                         tie_embeddings=tied)
    model = build_model(config, TaskConfig(), 384)
    # Embedding lookups are no matmuls: 384 x 16 token and 64 x 16 position tables; a tied
    # head multiplies by the token table once per token.
    matmul = model.count_params() - 64 * 16 - (0 if tied else 384 * 16)
    assert flops_per_token(model, 32) == 6 * matmul + 12 * 2 * 16 * 32


def test_peak_is_measured_once_then_read_from_the_cache(tmp_path):
    from components.training.flops import PEAK_FILE, peak_flops

    first = peak_flops("float32", str(tmp_path))
    second = peak_flops("float32", str(tmp_path))
    assert not first["cached"] and second["cached"]
    assert second["flops_per_second"] == first["flops_per_second"] > 1e8
    assert (tmp_path / PEAK_FILE).is_file() and "CPU" in first["device"]
