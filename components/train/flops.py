"""Model FLOPs utilisation: the model's training FLOPs per token against a measured peak;
and what those FLOPs decide (`xla_decision`: whether `train.jit_compile: auto` compiles).

FLOPs per token follow PaLM (appendix B): `6 N + 12 L d T`, where N counts the weights
that multiply activations (embedding lookups are not matrix multiplies, but a tied output
head is), L the layers, d the width and T the sequence length (attention scores and
their weighted sum, forward and backward). The peak is the best rate a large matrix
multiply has reached on this machine: every run measures it briefly (0.6 s on two cores)
and the cache keeps the best, so MFU says how much of the attainable matmul rate the
training step uses. (A peak measured once and reused would stay low forever if that one
measurement ran on a busy machine, and MFU would then read over 100%.)
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
import tensorflow as tf

PEAK_FILE = "matmul_peak.json"
# `train.jit_compile: auto` compiles with XLA from this many weight FLOPs per token (6 N).
XLA_MIN_FLOPS_PER_TOKEN = 1e6
_SIZES = (1024, 2048)
_REPEATS = 5


def flops_per_token(model, sequence_length: int) -> float:
    """Training FLOPs (forward and backward) per token position of `model`.

    Args:
        model: a task model with a `backbone` (`num_layers`, `hidden_dim`).
        sequence_length: T, the training window.

    Returns:
        `6 N + 12 L d T`.
    """
    backbone = model.backbone
    return (6.0 * _matmul_weights(model)
            + 12.0 * backbone.num_layers * backbone.hidden_dim * sequence_length)


def _matmul_weights(model) -> int:
    """N: the weights that multiply activations (a tied head counts, lookups do not)."""
    sizes = {id(v): int(np.prod(v.shape)) for v in model.trainable_variables}
    lookups = sum(sizes[id(v)] for v in model.trainable_variables if v.name == "embeddings")
    matmul = sum(sizes.values()) - lookups
    if getattr(model, "tie_embeddings", False):
        matmul += int(np.prod(model.backbone.token_embedding.embeddings.shape))
    return matmul


def xla_decision(setting, model) -> dict:
    """Whether the training step is compiled with XLA (`train.jit_compile`).

    `auto` compiles it when the model's weight FLOPs per token (6 N) reach
    `XLA_MIN_FLOPS_PER_TOKEN`. Measured (bench/NOTES.md, issue 26), XLA made the real
    step 1.2x (width 256, 4 layers) to 1.8x (the demo's width 128, 2 layers) faster on an
    AVX-512 CPU with oneDNN and 1.5x to 1.7x on an AVX2 one, for 1-4 s more compiling;
    below the threshold (toy models, the tests') a run is over before that is won back.
    The rule reads only the model, never a timing, so that the same config trains with
    the same arithmetic (the same losses) on a busy machine and an idle one.

    Args:
        setting: `train.jit_compile`: true, false or `auto`.
        model: the model to train.

    Returns:
        {"setting", "compiled" (bool), "reason"}.
    """
    if setting != "auto":
        return {"setting": setting, "compiled": bool(setting), "reason": "train.jit_compile"}
    per_token = 6.0 * _matmul_weights(model)
    compiled = per_token >= XLA_MIN_FLOPS_PER_TOKEN
    return {"setting": "auto", "compiled": compiled,
            "reason": f"auto: {per_token:.3g} weight FLOPs per token "
                      f"{'>=' if compiled else '<'} {XLA_MIN_FLOPS_PER_TOKEN:.0e}"}


def peak_flops(dtype: str, cache_dir: str | None) -> dict:
    """The best FLOP/s of square matmuls (1024, 2048) in `dtype` on the first accelerator
    (else CPU): measured now, against the best kept in `cache_dir`.

    Args:
        dtype: the compute dtype (`float32`, `bfloat16`, `float16`).
        cache_dir: where the best measurement is kept between runs (None: this one only).

    Returns:
        {"flops_per_second" (the best), "measured" (this run's), "device", "dtype",
        "cached" (whether an earlier run's measurement was the best)}.
    """
    device = _device()
    key = f"{platform.node()}|{device.device_type}|{dtype}"
    path = os.path.join(cache_dir, PEAK_FILE) if cache_dir else None
    cache = _read(path)
    measured = _measure(device.name, dtype)
    best = cache.get(key)
    if isinstance(best, dict) and best.get("flops_per_second", 0) >= measured:
        return {**best, "measured": measured, "cached": True}
    entry = {"flops_per_second": measured, "device": device.name, "dtype": dtype}
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        cache[key] = entry
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cache, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    return {**entry, "measured": measured, "cached": False}


def _device():
    for kind in ("GPU", "CPU"):
        devices = tf.config.list_logical_devices(kind)
        if devices:
            return devices[0]
    raise RuntimeError("no device to measure")


def _measure(device: str, dtype: str) -> float:
    """The best rate of a few square matmuls: the machine may be busy with other work, and
    the best of several short runs is the closest to what it can do."""
    best = 0.0
    with tf.device(device):
        for size in _SIZES:
            a = tf.random.stateless_normal([size, size], seed=[0, 1], dtype=dtype)
            b = tf.random.stateless_normal([size, size], seed=[0, 2], dtype=dtype)
            _matmul_sum(a, b).numpy()
            for _ in range(_REPEATS):
                start = time.perf_counter()
                _matmul_sum(a, b).numpy()
                best = max(best, 2.0 * size ** 3 / (time.perf_counter() - start))
    return best


@tf.function(autograph=False)
def _matmul_sum(a, b):
    return tf.reduce_sum(tf.matmul(a, b))


def _read(path: str | None) -> dict:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
