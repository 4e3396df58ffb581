"""One run per pipeline root at a time."""

from __future__ import annotations

import fcntl
import os
import time

from pipeline.core.errors import LockedError


class RootLock:
    """An exclusive, non-blocking lock on `<root>/.lmpipe.lock`, held for a run.

    The operating system drops it when the process dies, so a killed run never leaves a
    stale lock behind.

    Args:
        root: the pipeline root.
    """

    def __init__(self, root: str):
        self.path = os.path.join(root, ".lmpipe.lock")
        self.file = None

    def __enter__(self) -> "RootLock":
        self.file = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise LockedError(
                f"pipeline root {os.path.dirname(self.path)} is in use by {holder}; "
                "not starting a second run on it"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.file.truncate(0)
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
