"""Keeping the user's terminal readable.

TensorFlow's C++ runtime logs through absl before Python can configure it, so
`TF_CPP_MIN_LOG_LEVEL` does not silence lines such as `I0000 ... port.cc:153] oneDNN custom
operations are on`. We route file descriptor 2 through a filter thread that drops those
INFO/WARNING lines, the ERROR line of a failed CUDA probe on a machine without a GPU and
sentencepiece's `LOG(INFO)` lines, and passes everything else (other errors, our progress)
through unchanged. The filter keeps no log file: dropped lines are gone.
Child processes (Beam workers, multi-worker training) inherit the filtered descriptor.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\]"
    # Logged at ERROR level on every machine without a GPU, though TF then runs on the CPU.
    rb"|E\d{4} [\d:.]+\s+\d+ cuda_platform\.cc:\d+\] failed call to cuInit"
    # Logged at ERROR level when an int64 op meets oneDNN without AVX-512; TF falls back.
    rb"|E\d{4} [\d:.]+\s+\d+ util\.cc:\d+\] oneDNN supports DT_INT64 only on platforms"
    # sentencepiece's own INFO logging (its C++ library does not use absl).
    rb"|[\w./-]+\.cc\(\d+\) LOG\(INFO\) "
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GRPC_VERBOSITY": "ERROR",
    "KERAS_BACKEND": "tensorflow",
}


def quiet_environment() -> None:
    """Set the environment variables that keep TensorFlow and friends quiet."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(keras|tensorflow|apache_beam).*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("absl", "apache_beam", "tensorflow", "keras_tuner"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_script() -> None:
    """`quiet_environment` and `filter_native_stderr`, for a script run by hand (`python -m
    bench...`): not for code inside another process, such as tests, whose fd 2 it takes."""
    quiet_environment()
    filter_native_stderr()


def filter_native_stderr() -> None:
    """Drop absl INFO/WARNING lines written to fd 2 by native code, for this process."""
    try:
        original = os.dup(2)
    except OSError:
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while True:
                chunk = source.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                _forward(original, lines)
            if pending:
                _forward(original, [pending])

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes our pipe's last write end, so the pump sees EOF
        thread.join(timeout=2)

    atexit.register(restore)


def _forward(fd: int, lines: list[bytes]) -> None:
    kept = [line for line in lines if not NOISE.match(line)]
    if kept:
        os.write(fd, b"\n".join(kept) + b"\n")
