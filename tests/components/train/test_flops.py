"""Model FLOPs per token and the measured matmul peak behind MFU."""

from __future__ import annotations

import pytest

from pipeline.core.config import ModelConfig, TaskConfig


@pytest.mark.parametrize("tied", [False, True])
def test_flops_per_token_counts_matmul_weights_and_attention(tied):
    from components.train.flops import flops_per_token
    from models.factory import build_model

    config = ModelConfig(num_layers=2, hidden_dim=16, num_heads=2, max_sequence_length=64,
                         tie_embeddings=tied)
    model = build_model(config, TaskConfig(), 384)
    # Embedding lookups are no matmuls: 384 x 16 token and 64 x 16 position tables; a tied
    # head multiplies by the token table once per token.
    matmul = model.count_params() - 64 * 16 - (0 if tied else 384 * 16)
    assert flops_per_token(model, 32) == 6 * matmul + 12 * 2 * 16 * 32


def test_the_cache_keeps_the_best_measurement(tmp_path):
    """Every call measures; a cached peak below the measurement (taken on a busy machine)
    is replaced, one above it (a quieter moment) is kept and returned."""
    import json

    from components.train.flops import PEAK_FILE, peak_flops

    first = peak_flops("float32", str(tmp_path))
    assert not first["cached"] and first["flops_per_second"] == first["measured"] > 1e8
    assert "CPU" in first["device"]
    path = tmp_path / PEAK_FILE
    (key, entry), = json.loads(path.read_text()).items()

    path.write_text(json.dumps({key: {**entry, "flops_per_second": 1.0}}))
    raised = peak_flops("float32", str(tmp_path))
    assert not raised["cached"] and raised["flops_per_second"] == raised["measured"] > 1e8
    assert json.loads(path.read_text())[key]["flops_per_second"] == raised["measured"]

    path.write_text(json.dumps({key: {**entry, "flops_per_second": 1e30}}))
    kept = peak_flops("float32", str(tmp_path))
    assert kept["cached"] and kept["flops_per_second"] == 1e30 > kept["measured"] > 1e8
    assert json.loads(path.read_text())[key]["flops_per_second"] == 1e30
