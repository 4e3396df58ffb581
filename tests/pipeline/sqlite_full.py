"""`python -m tests.pipeline.sqlite_full ARGS...`: the `lmpipe` CLI on a machine whose disk is
full as SQLite sees it.

A full disk cannot be made here without mounting a small filesystem (which needs root
privileges a test does not have), so every SQLite database the process opens is capped at
the pages it holds already (`PRAGMA max_page_count`): SQLite itself then fails any write
that needs a new page with its own `SQLITE_FULL`, "database or disk is full", exactly as
on a full disk. Everything else (files, the lock, Beam) is untouched.
"""

from __future__ import annotations

import sqlite3
import sys


class _FullDisk(sqlite3.Connection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pages = self.execute("PRAGMA page_count").fetchone()[0]
        self.execute(f"PRAGMA max_page_count = {max(pages, 1)}")


def _connect(*args, **kwargs):
    return _OPEN(*args, factory=_FullDisk, **kwargs)


_OPEN = sqlite3.connect

if __name__ == "__main__":
    sqlite3.connect = _connect
    from pipeline.cli import main

    sys.exit(main(sys.argv[1:]))
