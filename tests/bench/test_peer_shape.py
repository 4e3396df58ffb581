"""The PyTorch peer of `bench.train_throughput` has exactly our model's parameters.

torch is never a dependency of lmpipe: the peer runs in its own venv (`make bench-peer`).
The test uses torch if this interpreter has it, else the peer venv's python, else skips.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.config import ModelConfig, TaskConfig

_ROOT = Path(__file__).resolve().parents[2]
_PEER_PYTHON = _ROOT / ".venv-peer" / "bin" / "python"
_SHAPE = {"vocab": 384, "width": 32, "layers": 2, "heads": 2, "mlp": 48, "sequence": 16}


def _peer_parameters() -> int:
    args = [f"--{name}={value}" for name, value in _SHAPE.items()] + ["--params-only"]
    if importlib.util.find_spec("torch") is not None:
        python = sys.executable
    elif _PEER_PYTHON.exists():
        python = str(_PEER_PYTHON)
    else:
        pytest.skip("no torch here and no peer venv (make bench-peer)")
    done = subprocess.run([python, "-m", "bench.peers.nanogpt_torch", *args], cwd=_ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["parameters"]


def test_peer_counts_the_same_parameters_as_our_gpt():
    from models.factory import build_model

    peer = _peer_parameters()
    ours = build_model(ModelConfig(num_layers=_SHAPE["layers"], hidden_dim=_SHAPE["width"],
                                   num_heads=_SHAPE["heads"], intermediate_dim=_SHAPE["mlp"],
                                   max_sequence_length=_SHAPE["sequence"]),
                       TaskConfig(), _SHAPE["vocab"])
    # Embeddings 384x32 + 16x32; per block LN 2x(2x32), QKV 32x96+96, output 32x32+32,
    # MLP 32x48+48 + 48x32+32; final LN 2x32; untied head 32x384.
    per_block = 4 * 32 + 32 * 96 + 96 + 32 * 32 + 32 + 32 * 48 + 48 + 48 * 32 + 32
    expected = 384 * 32 + 16 * 32 + 2 * per_block + 2 * 32 + 32 * 384
    assert ours.count_params() == expected
    assert peer == expected
