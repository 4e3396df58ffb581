"""Shared pieces of the server's tests: tiny bigram models published as serving versions,
a `lmpipe serve` process, and an in-process server on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests import lm_fixtures as lm
from tests.conftest import REPO


def publish(model: Path, serving: Path, number: int) -> Path:
    """Publish a model artifact's SavedModel as version `number`, as `push` does (a
    complete copy renamed into place)."""
    serving.mkdir(parents=True, exist_ok=True)
    tmp = serving / f".{number}.tmp-test"
    shutil.copytree(model / "saved_model", tmp)
    os.rename(tmp, serving / str(number))
    return serving / str(number)


def bigram(root: Path, seed: int):
    """A bigram model artifact under `root` and its table."""
    return root / f"model-{seed}", lm.write_bigram_model(root / f"model-{seed}", seed=seed,
                                                         sequence_length=16)


class ServeProcess:
    """`lmpipe serve` in a fresh process, as a user (or the InfraValidator) starts it."""

    def __init__(self, *args: str, env: dict | None = None):
        # stderr to a file: a pipe read only at `stop` could fill while the server runs and
        # stall it mid-test.
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "serve", *map(str, args)], cwd=REPO,
            stdout=subprocess.PIPE, stderr=self.errors, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
        self.ready = self.process.stdout.readline().strip()
        self.url = self.ready.rsplit(" ", 1)[-1]

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit status and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=60)
        self.errors.seek(0)
        return self.process.returncode, self.errors.read()
