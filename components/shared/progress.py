"""Progress lines on stderr for a Beam step that runs for minutes (ingest, transform, labels).

The step's DoFns count what they finish (files, shards, bytes) on a `Meter`; a thread of
this process reads the counts every `INTERVAL_SECONDS` and logs one line:

    [ingest] progress: 3/10 files, 12.5/50.0 MB (4.2 MB/s), 0m03s

A `Meter` is picklable and holds only a key: the counts live in this process's registry,
which `reporting` fills for the step's duration. With the DirectRunner's `in_memory` mode
(the default) the DoFns run in this process and find their counts; in a worker process
(`multi_processing`, Dataflow) the key is not registered and counting does nothing, so
those runners print no progress rather than write to a terminal they do not own. The
counts are added per file range or shard, never per record, so the cost is a lock and a
dict lookup a few times a second at most.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

# Seconds between two progress lines; a step shorter than this prints none.
INTERVAL_SECONDS = 10.0

# key -> the counts of a step running in this process (see `reporting`).
_ACTIVE: dict[str, "_Counts"] = {}


class _Counts:
    """Amounts done so far, added from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._done: dict[str, float] = {}

    def add(self, amounts: dict[str, float]) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._done[name] = self._done.get(name, 0) + amount

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._done)


class Meter:
    """What a DoFn counts its finished work on (picklable: only the key travels).

    Args:
        key: the registry key of the step's counts.
    """

    def __init__(self, key: str):
        self.key = key

    def add(self, **amounts: float) -> None:
        """Add finished work, e.g. `add(files=1, bytes=4096)`; nothing outside the process
        that started `reporting`."""
        counts = _ACTIVE.get(self.key)
        if counts is not None:
            counts.add(amounts)


@contextmanager
def reporting(log, step: str, totals: dict[str, float], interval: float | None = None):
    """Log a progress line every `interval` seconds while the block runs (none after it:
    the step's own final line is unchanged).

    Args:
        log: where lines go (`runtime.log`: stderr).
        step: the step's name, the line's prefix.
        totals: unit -> the amount the step will do (`files`, `shards`, `bytes`); a unit
            counted without a total is shown as a plain count.
        interval: seconds between lines; `INTERVAL_SECONDS` when None.

    Yields:
        The `Meter` for the step's DoFns.
    """
    key = f"{step}-{uuid.uuid4().hex}"
    counts = _ACTIVE[key] = _Counts()
    stop = threading.Event()
    every = INTERVAL_SECONDS if interval is None else interval
    thread = threading.Thread(target=_report, args=(log, step, totals, counts, stop, every),
                              name=f"progress-{step}", daemon=True)
    thread.start()
    try:
        yield Meter(key)
    finally:
        stop.set()
        thread.join()
        del _ACTIVE[key]


def _report(log, step: str, totals: dict, counts: _Counts, stop: threading.Event,
            interval: float) -> None:
    """The reporting thread: a line per `interval` until `stop` is set."""
    start = time.monotonic()
    while not stop.wait(interval):
        log(format_line(step, counts.snapshot(), totals, time.monotonic() - start))


def format_line(step: str, done: dict[str, float], totals: dict[str, float],
                seconds: float) -> str:
    """One progress line.

    Args:
        step: the step's name.
        done: unit -> amount done.
        totals: unit -> amount to do.
        seconds: time since the step started.

    Returns:
        e.g. `[ingest] progress: 3/10 files, 12.5/50.0 MB (4.2 MB/s), 0m03s`.
    """
    units = list(dict.fromkeys([*totals, *done]))
    # The rate of the bytes, else of the first unit (e.g. shards per second).
    rated = "bytes" if "bytes" in units else units[0] if units else None
    parts = []
    for unit in units:
        amount, total = done.get(unit, 0), totals.get(unit)
        of = f"/{total:g}" if total is not None else ""
        rate = amount / max(seconds, 1e-9)
        if unit == "bytes":
            of = f"/{total / 2**20:.1f}" if total is not None else ""
            parts.append(f"{amount / 2**20:.1f}{of} MB ({rate / 2**20:.1f} MB/s)")
        else:
            parts.append(f"{amount:g}{of} {unit}" + (f" ({rate:.1f}/s)" if unit == rated else ""))
    minutes, rest = divmod(int(seconds), 60)
    return f"[{step}] progress: {', '.join(parts)}, {minutes}m{rest:02d}s"
