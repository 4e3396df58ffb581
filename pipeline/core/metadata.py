"""The SQLite metadata store: runs, executions, artifacts and the events that link them.

It is the pipeline's memory in the manner of ML Metadata: which execution produced an
artifact, from which inputs and config, and in which run. The artifact directories stay
the source of truth for content; this store is the index for `lmpipe runs` and `lineage`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid

from pipeline.core.artifacts import Artifact
from pipeline.core.errors import UsageError

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
# The columns this module reads and writes: a table of that name without them is not ours.
COLUMNS = {
    "runs": "id, started, finished, status, config, summary",
    "executions": "id, run_id, component, status, cache_key, config, started, seconds, error",
    "artifacts": "id, uri, type, fingerprint, properties, producer, created",
    "events": "execution_id, artifact_id, kind, name",
}


# SQLite's result codes (prefixes of the extended ones) for a store this machine cannot
# open or write now (a full disk, a read-only file, a writer holding it too long), as
# opposed to a damaged one.
_UNWRITABLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN",
               "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_PERM")


def _check(db: sqlite3.Connection) -> None:
    """Raise `sqlite3.DatabaseError` unless the file is intact and its tables of our names
    are ours: a damaged page would otherwise surface as a traceback in whichever query
    first reads it."""
    problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    if problem != "ok":
        raise sqlite3.DatabaseError(problem)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in tables & set(COLUMNS):
        db.execute(f"SELECT {COLUMNS[table]} FROM {table} LIMIT 0")


def _reason(err: Exception) -> str:
    """An OSError's or SQLite error's message, on one line."""
    if isinstance(err, OSError):
        return err.strerror or err.__class__.__name__
    return " ".join(str(err).replace("*** in database main ***", "").split())


def _damaged(path: str, reason: str) -> UsageError:
    return UsageError(f"{path}: not a readable lmpipe metadata store ({reason}); move it "
                      f"aside to start a new history")


def _unusable(path: str, err: Exception, verb: str = "write") -> UsageError:
    return UsageError(f"{path}: cannot {verb} the metadata store ({_reason(err)})")


def _create(path: str) -> None:
    """Write a new store with its schema and nothing else.

    The schema goes into a file beside it, renamed into place once whole: a full disk or a
    kill never leaves a 0-byte `metadata.sqlite` behind, which is refused as a store cut
    to nothing (SQLite would silently take it for a new, empty one).
    """
    tmp = f"{path}.new-{uuid.uuid4().hex[:8]}"
    try:
        db = sqlite3.connect(tmp)
        try:
            db.executescript(SCHEMA)
        finally:
            db.close()
        os.replace(tmp, path)  # no race: only a run creates a store, holding the root's lock
    except (OSError, sqlite3.Error) as err:
        raise _unusable(path, err, "create") from None
    finally:
        for leftover in (tmp, f"{tmp}-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)


def _connect(path: str) -> sqlite3.Connection:
    """Open an existing store, checked (see `MetadataStore`)."""
    if os.path.isdir(path):
        raise _damaged(path, "a directory")
    if os.path.getsize(path) == 0:
        raise _damaged(path, "an empty file, 0 bytes")
    try:
        db = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as err:
        raise _unusable(path, err, "open") from None
    db.row_factory = sqlite3.Row
    try:
        _check(db)  # before the schema: another program's database stays untouched
        db.executescript(SCHEMA)  # a store of an older lmpipe may lack an index
    except sqlite3.DatabaseError as err:
        db.close()
        if getattr(err, "sqlite_errorname", "").startswith(_UNWRITABLE):
            raise _unusable(path, err, "open") from None
        raise _damaged(path, _reason(err)) from None
    return db


class MetadataStore:
    """Records of runs and their lineage in `<root>/metadata.sqlite`.

    Args:
        path: the SQLite file (created with its schema if missing).

    Raises:
        UsageError: the file is not an intact lmpipe store (truncated, emptied,
            overwritten, another program's database, a directory), or it cannot be
            created or written (a full disk, no permission): one line naming it. A write
            that fails later (`start_run`, `record_execution`, ...) raises it too.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if not os.path.exists(path):
                _create(path)
            self.db = _connect(path)
        except OSError as err:
            raise _unusable(path, err, "open") from None

    @contextlib.contextmanager
    def _writing(self):
        """One transaction; SQLite's "database or disk is full" and the like become one line
        naming the store."""
        try:
            with self.db:
                yield
        except sqlite3.OperationalError as err:
            raise _unusable(self.path, err) from None

    def close(self) -> None:
        self.db.close()

    def start_run(self, run_id: str, config: dict) -> None:
        with self._writing():
            self.db.execute(
                "INSERT INTO runs (id, started, status, config) VALUES (?, ?, 'running', ?)",
                (run_id, time.time(), json.dumps(config, sort_keys=True)),
            )

    def fail_abandoned_runs(self) -> int:
        """Record runs still `running` as failed; call it holding the root's lock, which
        proves their processes are gone (killed with SIGKILL, or the machine stopped).

        Returns:
            How many runs it marked.
        """
        with self._writing():
            return self.db.execute(
                "UPDATE runs SET status = 'failed' WHERE status = 'running'").rowcount

    def finish_run(self, run_id: str, status: str, summary: dict) -> None:
        with self._writing():
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
        with self._writing():
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
        row = self.db.execute("SELECT id, producer, fingerprint FROM artifacts WHERE uri = ?",
                              (artifact.uri,)).fetchone()
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
            elif row["producer"] is None and row["fingerprint"] != artifact.fingerprint:
                # An input from outside the pipeline changed in place (a serving directory
                # wiped and pushed to again): the row describes what is there now.
                self.db.execute(
                    "UPDATE artifacts SET type = ?, fingerprint = ?, properties = ? WHERE id = ?",
                    (artifact.type, artifact.fingerprint,
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

        An artifact reached a second time (two inputs sharing an upstream, as transform's
        documents and tokenizer do), or another output of an execution already listed
        (ingest's documents and golden documents), is listed again with `repeated` set and
        without its execution's inputs, which the first listing, earlier in the list,
        already holds.

        Args:
            artifact_id: the artifact to trace.
            depth: the depth of its entry (the entries below it are deeper).
            seen: ids of artifacts, and `("execution", id)` of executions, already listed
                (shared by the whole walk).

        Returns:
            One dict per artifact: depth, type, uri, fingerprint; `producer`, the execution
            that made it (component, run id, cache key, config, time), None for an input
            from outside the pipeline; `repeated`; and `written_by` (see `writer_of`) for
            an outside input that a recorded execution wrote, else None.
        """
        seen = set() if seen is None else seen
        row = self.db.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        producer = self._execution(row["producer"])
        entry = {"depth": depth, "type": row["type"], "uri": row["uri"],
                 "fingerprint": row["fingerprint"], "producer": producer,
                 "repeated": artifact_id in seen or ("execution", row["producer"]) in seen,
                 "written_by": None}
        if producer is None:
            run_id = json.loads(row["properties"]).get("run_id")
            entry["written_by"] = self.writer_of(row["uri"], run_id)
        result = [entry]
        if producer is None or entry["repeated"]:
            return result
        seen.update((artifact_id, ("execution", row["producer"])))
        for event in self.db.execute(
            "SELECT artifact_id FROM events WHERE execution_id = ? AND kind = 'input' ORDER BY name",
            (row["producer"],),
        ).fetchall():
            result.extend(self.lineage(event["artifact_id"], depth + 1, seen))
        return result

    def writer_of(self, uri: str, run_id: str | None = None) -> dict | None:
        """The artifact standing for a directory an execution wrote outside the artifact
        store: one whose `uri` property names `uri` (push's `pushed` output names the
        serving version it copied the model to).

        Later executions may name the same directory (a push that found the model already
        in service), so the first recorded one wins, among those of run `run_id` (the run
        the directory says wrote it, e.g. a model card's) when there are any.

        Args:
            uri: the directory (absolute).
            run_id: the run that wrote it, if known.

        Returns:
            {id, type, uri} of that artifact and {component, run_id} of its producer, or None.
        """
        rows = self.db.execute(
            "SELECT a.*, x.run_id AS run_id, x.component AS component FROM artifacts a"
            " JOIN executions x ON x.id = a.producer"
            " WHERE json_extract(a.properties, '$.uri') = ? ORDER BY x.started, a.id",
            (uri,),
        ).fetchall()
        matching = [row for row in rows if row["run_id"] == run_id] or rows
        if not matching:
            return None
        return {key: matching[0][key] for key in ("id", "type", "uri", "component", "run_id")}

    def _execution(self, execution_id: int | None) -> dict | None:
        if execution_id is None:
            return None
        row = self.db.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return {"component": row["component"], "run_id": row["run_id"],
                "cache_key": row["cache_key"], "started": row["started"],
                "config": json.loads(row["config"]) if row["config"] else None}
