"""Reading and writing artifact files on any Beam filesystem (a local path, gs://...).

On Vertex a step whose Beam pipeline runs on Dataflow gets gs:// locations for its inputs
and outputs, so the stages touch artifact files through Beam's `FileSystems`, which also
serves local paths. Writes need not be atomic: the runner publishes a whole output
directory at once (`pipeline/core/artifacts.py`).
"""

from __future__ import annotations

import glob
import json
import posixpath

from pipeline.core.errors import UsageError


def join(directory: str, *names: str) -> str:
    """A path inside `directory` (local or URL)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(directory, *names) if names else directory


def escape(path: str) -> str:
    """A path as a match pattern that matches only itself.

    Beam's `FileSystems.match` (and TensorFlow's glob) read `*`, `?` and `[` as wildcards,
    so a directory such as `run[1]` would otherwise match nothing. Every path handed to a
    matcher goes through this.

    Args:
        path: a local path or URL.

    Returns:
        The pattern (each wildcard character bracketed, e.g. `run[[]1]`).
    """
    return glob.escape(path)


def files_under(directory: str) -> list:
    """Every file below a directory, at any depth (local or any Beam filesystem).

    Args:
        directory: the directory (its name may hold wildcard characters).

    Returns:
        `FileMetadata` of the files, sorted by path.

    Raises:
        UsageError: there is no file below it: whatever is computed over its files (a
            model's digest) would be computed over nothing.
    """
    from apache_beam.io.filesystems import FileSystems

    found = FileSystems.match([join(escape(directory), "**")])[0].metadata_list
    if not found:
        raise UsageError(f"{directory}: no files below it (a missing or empty directory)")
    return sorted(found, key=lambda meta: meta.path)


def link(source: str, target: str) -> None:
    """Make `target` hold the bytes of `source` without copying where the filesystem
    allows: a hard link on local disk, else a copy (gs:// copies within the store)."""
    import os

    if "://" not in source and "://" not in target:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another device, or a filesystem without hard links
    from apache_beam.io.filesystems import FileSystems

    FileSystems.copy([source], [target])


def exists(path: str) -> bool:
    """Whether a file exists."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def basename(path: str) -> str:
    """The last component of a local path or URL."""
    return posixpath.basename(path.rstrip("/"))


def read_bytes(path: str) -> bytes:
    """A whole file's bytes."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def read_json(path: str):
    """A JSON file's content."""
    return json.loads(read_bytes(path).decode("utf-8"))


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
    """Write a whole file, as given (never compressed by its suffix)."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.create(path, mime_type=mime_type,
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def write_json(path: str, data) -> None:
    """Write `data` as sorted, indented UTF-8 JSON."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
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
