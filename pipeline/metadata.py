"""The SQLite metadata store: runs, executions, artifacts and the events that link them.

It is the pipeline's memory in the manner of ML Metadata: which execution produced an
artifact, from which inputs and config, and in which run. The artifact directories stay
the source of truth for content; this store is the index for `lmpipe runs` and `lineage`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

from pipeline.artifacts import Artifact

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    component TEXT NOT NULL,
    status TEXT NOT NULL,
    cache_key TEXT,
    config TEXT,
    started REAL NOT NULL,
    seconds REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    properties TEXT NOT NULL,
    producer INTEGER REFERENCES executions(id),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    execution_id INTEGER NOT NULL REFERENCES executions(id),
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
    kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
    name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_run ON executions(run_id);
CREATE INDEX IF NOT EXISTS events_by_execution ON events(execution_id);
CREATE INDEX IF NOT EXISTS events_by_artifact ON events(artifact_id);
"""


class MetadataStore:
    """Records of runs and their lineage in `<root>/metadata.sqlite`.

    Args:
        path: the SQLite file (created with its schema if missing).
    """

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def start_run(self, run_id: str, config: dict) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO runs (id, started, status, config) VALUES (?, ?, 'running', ?)",
                (run_id, time.time(), json.dumps(config, sort_keys=True)),
            )

    def finish_run(self, run_id: str, status: str, summary: dict) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                (time.time(), status, json.dumps(summary, sort_keys=True), run_id),
            )

    def record_execution(
        self,
        run_id: str,
        component: str,
        status: str,
        *,
        cache_key: str | None = None,
        config: dict | None = None,
        started: float,
        seconds: float | None = None,
        inputs: dict[str, Artifact | None] | None = None,
        outputs: dict[str, Artifact] | None = None,
        error: str | None = None,
    ) -> int:
        """Store one execution (executed, cached, skipped or failed) and its events.

        Returns:
            The execution's id.
        """
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO executions (run_id, component, status, cache_key, config, started,"
                " seconds, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, component, status, cache_key,
                 json.dumps(config, sort_keys=True) if config is not None else None,
                 started, seconds, error),
            )
            execution_id = cursor.lastrowid
            for name, artifact in (inputs or {}).items():
                if artifact is not None:
                    self._link(execution_id, artifact, "input", name, produced=False)
            for name, artifact in (outputs or {}).items():
                self._link(execution_id, artifact, "output", name, produced=status == "executed")
        return execution_id

    def _link(self, execution_id: int, artifact: Artifact, kind: str, name: str, produced: bool):
        row = self.db.execute("SELECT id FROM artifacts WHERE uri = ?", (artifact.uri,)).fetchone()
        if row is None:
            row_id = self.db.execute(
                "INSERT INTO artifacts (uri, type, fingerprint, properties, producer, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (artifact.uri, artifact.type, artifact.fingerprint,
                 json.dumps(artifact.properties, sort_keys=True),
                 execution_id if produced else None, time.time()),
            ).lastrowid
        else:
            row_id = row["id"]
            if produced:
                # A forced rerun republishes the same URI: it now comes from this execution.
                self.db.execute(
                    "UPDATE artifacts SET producer = ?, fingerprint = ?, properties = ? WHERE id = ?",
                    (execution_id, artifact.fingerprint,
                     json.dumps(artifact.properties, sort_keys=True), row_id),
                )
        self.db.execute(
            "INSERT INTO events (execution_id, artifact_id, kind, name) VALUES (?, ?, ?, ?)",
            (execution_id, row_id, kind, name),
        )

    def runs(self, limit: int = 20) -> list[sqlite3.Row]:
        """The most recent runs, newest first."""
        return self.db.execute(
            "SELECT * FROM runs ORDER BY started DESC LIMIT ?", (limit,)
        ).fetchall()

    def executions(self, run_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM executions WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()

    def artifact_containing(self, path: str) -> sqlite3.Row | None:
        """The artifact whose directory is `path` or contains it."""
        path = os.path.abspath(path)
        best = None
        for row in self.db.execute("SELECT * FROM artifacts"):
            uri = row["uri"]
            if path == uri or path.startswith(uri.rstrip("/") + "/"):
                if best is None or len(uri) > len(best["uri"]):
                    best = row
        return best

    def lineage(self, artifact_id: int, depth: int = 0, seen: set | None = None) -> list[dict]:
        """The chain of executions and inputs that produced an artifact, depth first.

        Returns:
            One dict per artifact: depth, type, uri, fingerprint, and its producer's
            component, cache key, config and time (None for external inputs).
        """
        seen = set() if seen is None else seen
        row = self.db.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        entry = {"depth": depth, "type": row["type"], "uri": row["uri"],
                 "fingerprint": row["fingerprint"], "producer": None}
        result = [entry]
        if row["producer"] is None or artifact_id in seen:
            return result
        seen.add(artifact_id)
        producer = self.db.execute(
            "SELECT * FROM executions WHERE id = ?", (row["producer"],)
        ).fetchone()
        entry["producer"] = {
            "component": producer["component"], "run_id": producer["run_id"],
            "cache_key": producer["cache_key"], "started": producer["started"],
            "config": json.loads(producer["config"]) if producer["config"] else None,
        }
        for event in self.db.execute(
            "SELECT artifact_id FROM events WHERE execution_id = ? AND kind = 'input' ORDER BY name",
            (producer["id"],),
        ).fetchall():
            result.extend(self.lineage(event["artifact_id"], depth + 1, seen))
        return result
