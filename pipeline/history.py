"""`lmpipe runs` and `lmpipe lineage`: reading the metadata store for people."""

from __future__ import annotations

import json
import os
import time

from pipeline.errors import UsageError
from pipeline.metadata import MetadataStore

STORE = "metadata.sqlite"


def format_runs(root: str, limit: int) -> str:
    """A table of the most recent runs under a pipeline root, newest first."""
    store = _open(os.path.join(root, STORE), root)
    try:
        rows = store.runs(limit)
        lines = [f"{'run':<24} {'started (UTC)':<20} {'status':<10} {'ppl':>9} {'blessed':>8}  executed"]
        for row in rows:
            summary = json.loads(row["summary"]) if row["summary"] else {}
            metrics = summary.get("metrics", {})
            executed = [name for name, c in summary.get("components", {}).items()
                        if c["status"] == "executed"]
            ppl = metrics.get("eval_perplexity")
            lines.append(
                f"{row['id']:<24} {_when(row['started']):<20} {row['status']:<10} "
                f"{(f'{ppl:.2f}' if ppl is not None else '-'):>9} "
                f"{str(metrics.get('blessed', '-')):>8}  {','.join(executed) or '-'}"
            )
        return "\n".join(lines)
    finally:
        store.close()


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
