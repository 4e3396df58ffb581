"""One run per pipeline root at a time."""

from __future__ import annotations

import fcntl
import os
import time

from pipeline.core.errors import LockedError, UsageError


class RootLock:
    """An exclusive, non-blocking lock on `<root>/.lmpipe.lock`, held for a run.

    The operating system drops it when the process dies, so a killed run never leaves a
    stale lock behind. The file says who holds it, for a second run's message.

    Args:
        root: the pipeline root.

    Raises (on entering):
        LockedError: another process holds the lock.
        UsageError: the lock file cannot be opened, locked or written (a directory in its
            place, a full disk, no permission): one line naming it.
    """

    def __init__(self, root: str):
        self.path = os.path.join(root, ".lmpipe.lock")
        self.fd: int | None = None

    def __enter__(self) -> "RootLock":
        # Unbuffered descriptor calls: a failed write leaves no buffer that fails again on close.
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._unusable(err) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(self.fd)
            raise LockedError(
                f"pipeline root {os.path.dirname(self.path)} is in use by "
                f"{holder or 'another process'}; not starting a second run on it"
            ) from None
        except OSError as err:  # a filesystem without locks
            os.close(self.fd)
            raise self._unusable(err) from None
        holder = f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode()
        try:
            os.pwrite(self.fd, holder, 0)
            os.ftruncate(self.fd, len(holder))
        except OSError as err:  # a full disk: stop now, before anything else is written
            os.close(self.fd)
            raise self._unusable(err) from None
        return self

    def _unusable(self, err: OSError) -> UsageError:
        return UsageError(f"{self.path}: cannot use the root's lock file "
                          f"({err.strerror or err.__class__.__name__})")

    def __exit__(self, *exc) -> None:
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # the holder's line stays behind; the next run overwrites it
        # Unlocked explicitly: a forked child may still share the descriptor.
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
