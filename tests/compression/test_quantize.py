"""The int8 export: what is int8, its size, and its quality in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.config import ModelConfig, TaskConfig

# The int8 export's eval perplexity may differ from the float one's by at most this
# fraction (measured here: well under 0.1%; on the demo corpus see docs/compression.md).
PERPLEXITY_TOLERANCE = 0.01
SCRIPT = Path(__file__).with_name("fresh_process.py")


@pytest.fixture(scope="module")
def fresh(trained):
    """The fresh process's measurements of both exports."""
    root, model, _ = trained
    paths = [str(model / "saved_model"), str(model / "saved_model_int8")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    process = subprocess.run([sys.executable, str(SCRIPT), str(root / "examples"), *paths],
                             capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout)
    return result["project_modules"], [result["models"][p] for p in paths]


def test_int8_export_loads_in_a_fresh_process_within_tolerance(trained, fresh):
    root, model, _ = trained
    project_modules, (float_run, int8_run) = fresh
    assert project_modules == []
    summary = json.loads((model / "train_summary.json").read_text())
    sums = float_run["sums"]
    # The float export scores the eval split exactly as the trainer's evaluation did.
    assert sums["nll"] / sums["num_tokens"] == pytest.approx(summary["eval_loss"], rel=1e-5)
    assert int8_run["sums"]["num_tokens"] == sums["num_tokens"] > 0
    assert int8_run["sums"]["num_bytes"] == sums["num_bytes"]
    perplexity = [np.exp(r["sums"]["nll"] / r["sums"]["num_tokens"]) for r in fresh[1]]
    assert perplexity[1] == pytest.approx(perplexity[0], rel=PERPLEXITY_TOLERANCE)
    assert perplexity[1] != perplexity[0]
    assert int8_run["score_tokens"] == float_run["score_tokens"]
    np.testing.assert_allclose(int8_run["score_nll"], float_run["score_nll"], rtol=0.02)
    assert isinstance(int8_run["completion"], str)
    assert set(float_run["dtypes"].values()) == {"float32"}
    int8_names = sorted(n for n, d in int8_run["dtypes"].items() if d == "int8")
    # Every block projection (6 per block, 2 blocks), the token embedding and the head.
    assert len(int8_names) == 6 * 2 + 2
    assert any("token_embedding" in n for n in int8_names)
    assert any("lm_head" in n for n in int8_names)


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_train_summary_describes_both_exports(trained):
    import tensorflow as tf

    _, model, _ = trained
    variants = json.loads((model / "train_summary.json").read_text())["variants"]
    assert set(variants) == {"float", "quantized"}
    assert (variants["float"]["mode"], variants["quantized"]["mode"]) == ("float", "int8_weights")
    for variant in variants.values():
        directory = model / variant["directory"]
        assert variant["bytes"] == _directory_bytes(directory)
        assert variant["variables_bytes"] == _directory_bytes(directory / "variables")
        assert 0 < variant["variables_gzip_bytes"] < variant["variables_bytes"]
    prefix = str(model / "saved_model_int8" / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    int8 = sum(reader.get_tensor(n).size for n, _ in tf.train.list_variables(prefix)
               if reader.get_variable_to_dtype_map()[n] == tf.int8)
    assert variants["quantized"]["int8_weights"] == int8
    assert variants["float"]["int8_weights"] == 0
    assert variants["quantized"]["parameters"] == variants["float"]["parameters"]
    # int8 weights and per-channel scales; learned positions, norms and biases stay float.
    assert variants["quantized"]["variables_bytes"] < 0.5 * variants["float"]["variables_bytes"]


def test_the_pruned_model_reports_the_sparsity_it_has(trained):
    from components.train.pruning import prunable_variables
    from models.factory import load_model

    _, model, _ = trained
    pruning = json.loads((model / "train_summary.json").read_text())["pruning"]
    keras_model = load_model(str(model / "model.keras"))
    kernels = {v.path: np.asarray(v) for v in prunable_variables(keras_model)}
    assert set(pruning["per_variable"]) == set(kernels)
    for path, values in kernels.items():
        assert np.mean(values == 0) == pruning["per_variable"][path] == 0.5
    assert pruning["measured_sparsity"] == 0.5 and pruning["target_sparsity"] == 0.5
    assert pruning["schedule"] == {"initial_sparsity": 0.0, "begin_step": 2, "end_step": 10,
                                   "frequency": 4, "power": 3.0}
    everything = [np.asarray(w) for w in keras_model.get_weights()]
    zeros = sum(int(np.count_nonzero(w == 0)) for w in everything)
    assert pruning["model_zeros_fraction"] == zeros / sum(w.size for w in everything)


@pytest.mark.parametrize("family, modes", [("gpt", ("int8", "int8_weights")),
                                           ("llama", ("int8",)), ("bert", ("int8",))])
def test_every_family_quantizes_with_small_logit_error(family, modes):
    import keras

    from models.factory import build_model
    from models.quantize import int8_weights, quantize_int8

    config = ModelConfig(family=family, num_layers=1, hidden_dim=32, num_heads=2,
                         max_sequence_length=32)
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 96, size=(2, 16)).astype(np.int32)
    inputs = {"token_ids": tokens, "segment_ids": np.ones_like(tokens)}
    errors = {}
    for mode in modes:
        keras.utils.set_random_seed(0)
        model = build_model(config, TaskConfig(), 96)
        before = np.asarray(model(inputs))
        quantize_int8(model, mode)
        after = np.asarray(model(inputs))
        assert int8_weights(model) > 0.8 * sum(np.asarray(w).size for w in model.get_weights())
        errors[mode] = np.linalg.norm(after - before) / np.linalg.norm(before)
    assert 0 < errors["int8"] < 0.05
    if "int8_weights" in errors:
        # Weight only keeps the activations exact: the smaller error of the two.
        assert 0 < errors["int8_weights"] < errors["int8"]
    with pytest.raises(ValueError, match="unknown int8 mode 'int4'"):
        quantize_int8(model, "int4")
