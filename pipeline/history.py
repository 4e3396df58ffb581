"""`lmpipe runs` (the retraining history) and `lmpipe lineage`: the metadata store for people."""

from __future__ import annotations

import json
import os
import time

from pipeline.errors import UsageError
from pipeline.metadata import MetadataStore

STORE = "metadata.sqlite"
RUNS_HEADER = (f"{'run':<24} {'started (UTC)':<19} {'status':<9} {'docs train/eval':>15} "
               f"{'data':>8} {'ppl':>9} {'bpb':>7} {'blessed':>7} {'pushed':>7}  executed")


def format_runs(root: str, limit: int) -> str:
    """The retraining history under a pipeline root, newest run first.

    One line per run: when it started, its status, the data it trained on (documents
    per split and bytes, from its ingest artifact), eval perplexity and bits per byte,
    whether the model was blessed, the version it pushed (`v2`; `(v1)` when its model
    was already that version in service; `-` when nothing was pushed), and which
    components executed rather than came from the cache.

    Args:
        root: the pipeline root.
        limit: at most this many runs.

    Returns:
        The table, a header line first.
    """
    store = _open(os.path.join(root, STORE), root)
    try:
        lines = [_run_line(row, [e["component"] for e in store.executions(row["id"])
                                 if e["status"] == "executed"])
                 for row in store.runs(limit)]
    finally:
        store.close()
    return "\n".join([RUNS_HEADER, *lines])


def _run_line(row, executed: list[str]) -> str:
    record = json.loads(row["summary"]) if row["summary"] else {}
    components = record.get("components", {})
    metrics = record.get("metrics", {})
    data = run_data(components)
    docs = f"{data['train']}/{data['eval']}" if data else "-"
    size = _bytes(data["bytes"]) if data else "-"
    return (f"{row['id']:<24} {_when(row['started']):<19} {row['status']:<9} {docs:>15} "
            f"{size:>8} {_number(metrics.get('eval_perplexity'), '.2f'):>9} "
            f"{_number(metrics.get('eval_bits_per_byte'), '.3f'):>7} "
            f"{_flag(metrics.get('blessed')):>7} {pushed_version(components):>7}  "
            f"{','.join(executed) or '-'}")


def run_data(components: dict) -> dict | None:
    """Documents per split and bytes a run ingested, from its documents artifact.

    Args:
        components: the `components` of a run record.

    Returns:
        {"train", "eval", "bytes"}, or None when the run has no (readable) documents.
    """
    uri = components.get("ingest", {}).get("outputs", {}).get("documents")
    stats = _read_json(os.path.join(uri, "stats.json")) if uri else None
    try:
        train, evaluation = stats["splits"]["train"], stats["splits"]["eval"]
        return {"train": int(train["documents"]), "eval": int(evaluation["documents"]),
                "bytes": int(train["bytes"]) + int(evaluation["bytes"])}
    except (KeyError, TypeError, ValueError):
        return None  # not an ingest artifact's statistics (e.g. a test's own data step)


def pushed_version(components: dict) -> str:
    """`vN` for a version this run pushed, `(vN)` for its model already in service, else `-`."""
    push = components.get("push", {})
    uri = push.get("outputs", {}).get("pushed")
    record = _read_json(os.path.join(uri, "push.json")) if uri else None
    if not record or record.get("version") is None:
        return "-"
    new = push.get("status") == "executed" and record.get("pushed") is True
    return f"v{record['version']}" if new else f"(v{record['version']})"


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _flag(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _bytes(count: float) -> str:
    if count < 1000:
        return f"{count:.0f}B"
    for unit in ("kB", "MB", "GB"):
        count /= 1000
        if count < 1000 or unit == "GB":
            break
    return f"{count:.1f}{unit}"


def format_lineage(path: str) -> str:
    """What produced the artifact at (or containing) `path`, and from which inputs."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    db = _find_store(path)
    store = _open(db, path)
    try:
        artifact = store.artifact_containing(path)
        if artifact is None:
            raise UsageError(f"{path}: not inside an artifact recorded in {db}")
        lines = []
        for entry in store.lineage(artifact["id"]):
            indent = "  " * entry["depth"]
            lines.append(f"{indent}{entry['type']} {entry['uri']}")
            producer = entry["producer"]
            if producer is None:
                lines.append(f"{indent}  (external input, fingerprint {entry['fingerprint'][:16]})")
                continue
            lines.append(f"{indent}  made by {producer['component']} in run {producer['run_id']}"
                         f" at {_when(producer['started'])}, cache key {producer['cache_key'][:16]}")
            for section, values in (producer["config"] or {}).items():
                lines.append(f"{indent}  config {section}: {json.dumps(values, sort_keys=True)}")
        return "\n".join(lines)
    finally:
        store.close()


def _find_store(path: str) -> str:
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    while True:
        candidate = os.path.join(directory, STORE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            raise UsageError(f"{path}: no {STORE} in this directory or above it")
        directory = parent


def _open(db: str, what: str) -> MetadataStore:
    if not os.path.isfile(db):
        raise UsageError(f"{what}: no pipeline runs recorded here ({db} missing)")
    return MetadataStore(db)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))
