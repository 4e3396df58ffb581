"""Artifacts and their atomic publication.

An execution of component C with cache key K owns `<root>/C/<K[:16]>/`; each named output
is a subdirectory of it. The component writes into a staging directory beside it, and
only a complete execution is renamed into place, together with `lmpipe_execution.json`
(the completion marker), so a reader sees either nothing or a whole result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field

MARKER = "lmpipe_execution.json"
# What `lmpipe component` leaves in an output directory it writes (`pipeline/step_outputs.py`).
STEP_OUTPUT_MARK = ".lmpipe-output.json"
STAGING = ".staging"
WORK = ".work"


@dataclass(frozen=True)
class Artifact:
    """A typed output of a component (or an input resolved from outside the DAG).

    Attributes:
        type: the artifact type, e.g. `Documents`, `Tokenizer`, `Examples`, `Model`.
        uri: where it lives (a directory, or for external inputs a description).
        fingerprint: a hash that changes whenever its content may have changed.
        properties: small JSON-serializable facts about it (e.g. matched input files).
    """

    type: str
    uri: str
    fingerprint: str
    properties: dict = field(default_factory=dict)

    def path(self, *parts: str) -> str:
        """A path inside the artifact's directory."""
        return os.path.join(self.uri, *parts)

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> "Artifact":
        return Artifact(**data)


def execution_dir(root: str, component: str, cache_key: str) -> str:
    """Where the published outputs of (component, cache key) live."""
    return os.path.join(root, component, cache_key[:16])


def work_dir(root: str, component: str, cache_key: str) -> str:
    """The stable scratch directory of (component, cache key): it survives a killed run
    (unlike staging) so that a restarted execution finds its checkpoints there."""
    return os.path.join(root, component, WORK, cache_key[:16])


def read_marker(directory: str) -> dict | None:
    """The completion record of a published execution, or None if it is not complete."""
    try:
        with open(os.path.join(directory, MARKER), encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Staging:
    """A fresh directory to write one execution's outputs into, published by `commit`.

    Args:
        root: the pipeline root.
        component: the component's name.
        cache_key: the execution's cache key.
    """

    def __init__(self, root: str, component: str, cache_key: str):
        self.final = execution_dir(root, component, cache_key)
        self.dir = os.path.join(root, component, STAGING, f"{cache_key[:16]}-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.dir)

    def output_dir(self, name: str) -> str:
        """The (created) staging directory of output `name`."""
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def commit(self, record: dict) -> str:
        """Write the completion marker and move the staging directory into place.

        Args:
            record: the execution record; stored as the marker.

        Returns:
            The published directory.
        """
        write_json_atomic(os.path.join(self.dir, MARKER), record)
        if os.path.exists(self.final):
            # A forced rerun (--no-cache) replaces the old result: move it aside first so
            # the final path never holds a mix of the two.
            trash = f"{self.dir}.old"
            os.rename(self.final, trash)
            os.rename(self.dir, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.dir, self.final)
        return self.final

    def discard(self) -> None:
        """Remove everything the failed execution wrote."""
        shutil.rmtree(self.dir, ignore_errors=True)


def reuse_or_make(root: str, owner: str, key: str, make) -> tuple[str, dict, bool]:
    """A cached part of a stage's work that outlives the stage's own execution: one data
    span's documents or examples, reused by every later run whose span is the same.

    It is published like an execution, under `<root>/<owner>/<key[:16]>/`, with the
    properties `make` returns in its completion marker.

    Args:
        root: the pipeline root.
        owner: the directory it lives under, e.g. `ingest-spans`.
        key: what it is keyed by (a hash of everything it depends on).
        make: function(directory) -> properties, writing the part into `directory`.

    Returns:
        (the published directory, its properties, whether it was reused).
    """
    final = execution_dir(root, owner, key)
    marker = read_marker(final)
    if marker is not None:
        return final, marker["properties"], True
    staging = Staging(root, owner, key)
    try:
        properties = make(staging.dir)
        staging.commit({"owner": owner, "cache_key": key, "properties": properties})
    except BaseException:
        staging.discard()
        raise
    return final, properties, False


def remove_stale_staging(root: str) -> None:
    """Delete staging directories left by runs that were killed (the lock is held)."""
    if not os.path.isdir(root):
        return
    for component in os.listdir(root):
        staging = os.path.join(root, component, STAGING)
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


def write_json_atomic(path: str, data) -> None:
    """Write JSON to `path` through a temporary file and a rename.

    Raises:
        OSError: it could not be written (a full disk); `path` is as it was, and no
            temporary file is left behind.
    """
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
