"""Reading and writing evaluate's files on any Beam filesystem.

On Vertex, a step whose Beam pipeline runs on Dataflow gets gs:// locations for its
inputs and outputs, so evaluate touches files only through Beam's `FileSystems` (which
also serves local paths). Outputs need no atomic writes: the runner publishes the whole
output directory at once.
"""

from __future__ import annotations

import json


def join(directory: str, *names: str) -> str:
    """A path inside `directory` (local or URL)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(directory, *names)


def exists(path: str) -> bool:
    """Whether a file exists."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
    """Write a whole file."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.create(path, mime_type=mime_type,
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def write_json(path: str, data) -> None:
    """Write sorted, indented JSON."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_bytes(path, text.encode("utf-8"), "application/json")


def read_artifact_json(artifact, name: str) -> dict | None:
    """The JSON file `name` of an output artifact; None when the artifact or file is absent
    or unreadable (a run's summary must not fail on a step that wrote nothing)."""
    if artifact is None:
        return None
    try:
        with open(artifact.path(name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
