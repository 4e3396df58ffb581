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
