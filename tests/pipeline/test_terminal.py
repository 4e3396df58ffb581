"""The stderr filter drops TensorFlow's start-up noise and keeps everything else."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import os, sys
from pipeline.terminal import filter_native_stderr
filter_native_stderr()
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1795942723.578413    2607 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"W0000 00:00:1795942723.5    2607 cudart_stub.cc:31] Could not find cuda drivers\\n")
os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\\n")
os.write(2, b"E0000 00:00:1795942723.5    2607 foo.cc:1] a real error\\n")
os.write(2, b"E0000 00:00:1795953644.059208   15967 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\\n")
os.write(2, b"E0000 00:00:1795958826.414601   13033 util.cc:131] oneDNN supports DT_INT64 only on platforms with AVX-512. Falling back to the default Eigen-based implementation if present.\\n")
os.write(2, b"normalizer.cc(51) LOG(INFO) precompiled_charsmap is empty. use identity normalization.\\n")
os.write(2, b"trainer_interface.cc(409) LOG(ERROR) a real sentencepiece error\\n")
print("progress line", file=sys.stderr)
print("result line")
"""


def test_noise_is_dropped_and_errors_progress_and_stdout_are_kept():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == "result line\n"
    assert result.stderr.splitlines() == [
        "E0000 00:00:1795942723.5    2607 foo.cc:1] a real error",
        "trainer_interface.cc(409) LOG(ERROR) a real sentencepiece error", "progress line"]


def test_run_summary_shows_rates_without_e_notation():
    from pipeline.cli import format_run

    record = {"run_id": "r", "status": "succeeded", "components": {}, "pushed_model": None,
              "metrics": {"eval_perplexity": 81.3847, "train_tokens_per_second": 15123.7,
                          "blessed": True, "eval_bits_per_byte": None}}
    lines = format_run(record, "/root").splitlines()
    assert "  eval_perplexity: 81.38" in lines
    assert "  train_tokens_per_second: 15,124" in lines
    assert "  blessed: True" in lines
    assert not any("eval_bits_per_byte" in line for line in lines)
