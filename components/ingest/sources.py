"""Matching `data.inputs` on any Beam filesystem, and the raw input artifact.

A pattern is a file, a directory (every supported file below it) or a glob. Matching
goes through `FileSystems.match`, so `gs://` works as local paths do. A directory that a
Hugging Face `datasets` `save_to_disk` wrote (it holds a `state.json`) stands for the
Arrow files its `state.json` lists, not the cache files `datasets` may leave beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat

from pipeline.core import files
from pipeline.core.artifacts import Artifact
from pipeline.core.errors import UsageError

# Each format and the compressions its files may have (`.gz`/`.bz2` wrap a whole stream;
# Parquet and Arrow compress inside the file). A format's reader is in `records.py`.
COMPRESSIONS = ("", ".gz", ".bz2")
FORMATS = {
    "txt": COMPRESSIONS,
    "jsonl": COMPRESSIONS,
    "csv": COMPRESSIONS,
    "tsv": COMPRESSIONS,
    "tfrecord": ("", ".gz"),
    "parquet": ("",),
    "arrow": ("",),
}
# A Hugging Face `datasets` directory written by `save_to_disk` lists its Arrow files here.
HF_STATE_FILE = "state.json"
_GLOB = re.compile(r"[*?\[]")


def file_format(path: str) -> str | None:
    """The format (a key of `FORMATS`) of a supported file name, else None."""
    name = path.lower()
    for fmt, compressions in FORMATS.items():
        if any(name.endswith(f".{fmt}{compression}") for compression in compressions):
            return fmt
    return None


def _supported_names() -> str:
    return ", ".join(f".{fmt}{c}" for fmt, compressions in FORMATS.items() for c in compressions)


def match_pattern(pattern: str, key: str = "data.inputs") -> list:
    """The files one input pattern stands for.

    Args:
        pattern: a path, a directory or a glob.
        key: the config key the pattern comes from, named in errors.

    Returns:
        `FileMetadata` of the matched files (supported formats only for a directory).

    Raises:
        UsageError: nothing matched, or a named file has an unsupported format.
    """
    found = []
    # A local path that exists is meant literally, even with glob characters in its name.
    literal = _is_local(pattern) and os.path.exists(pattern)
    escaped = files.escape(pattern) if literal else pattern
    if literal or not _GLOB.search(pattern):
        below = _match(escaped.rstrip("/") + "/**", pattern, key)
        found = _saved_dataset_files([m for m in below if file_format(m.path)], below, key)
        if not found and (below or _is_local_directory(pattern)):
            raise UsageError(f"{key}: directory {pattern} holds no "
                             f"{_supported_names()} files")
    if not found:
        found = _match(escaped, pattern, key)
        for meta in found:
            if file_format(meta.path) is None:
                raise UsageError(f"{key}: {meta.path} (from {pattern}) is not a supported "
                                 f"file type ({_supported_names()})")
    if not found:
        raise UsageError(f"{key}: {pattern} matches no files")
    for meta in found:
        _require_regular_file(meta.path, pattern, key)
    return found


def _saved_dataset_files(supported: list, listing: list, key: str) -> list:
    """`supported` with the Arrow files of each `save_to_disk` directory in `listing`
    narrowed to those its `state.json` lists (`_data_files`): such a directory may also
    hold `datasets`' cache files (`cache-*.arrow`), which are not the dataset.

    Raises:
        UsageError: a `state.json` that is not `datasets`' or lists a missing file.
    """
    listed = {}
    for meta in listing:
        directory, _, name = meta.path.rpartition("/")
        if name == HF_STATE_FILE:
            listed[directory] = _state_data_files(meta.path, key)
    if not listed:
        return supported
    present = {m.path for m in listing}
    for directory, names in listed.items():
        for name in sorted(names):
            if f"{directory}/{name}" not in present:
                raise UsageError(f"{key}: {directory}/{HF_STATE_FILE} lists {name}, which "
                                 f"is missing")
    return [m for m in supported if file_format(m.path) != "arrow"
            or m.path.rpartition("/")[0] not in listed
            or m.path.rpartition("/")[2] in listed[m.path.rpartition("/")[0]]]


def _state_data_files(path: str, key: str) -> set[str]:
    """The Arrow file names a `save_to_disk` directory's `state.json` lists."""
    try:
        state = json.loads(files.read_bytes(path))
        return {entry["filename"] for entry in state["_data_files"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{key}: {path} is not a datasets save_to_disk state file "
                         f"(no _data_files list of filenames: {err})") from None


def _require_regular_file(path: str, pattern: str, key: str) -> None:
    """Refuse a local FIFO, socket or device (or a link to one): reading it would block
    ingest or never end, and it has no size or time for the cache key."""
    if not _is_local(path):
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # gone since the listing: the reader reports it by name
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"
        raise UsageError(f"{key}: {path} (from {pattern}) is {kind}, not a regular file")


def _is_local(path: str) -> bool:
    """Whether `path` is on local disk (no scheme such as gs://)."""
    return "://" not in path


def _is_local_directory(path: str) -> bool:
    """Whether `path` is a directory on local disk (object stores such as gs:// have no
    empty directories: there a prefix with nothing below it matches no files)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.localfilesystem import LocalFileSystem

    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem) and os.path.isdir(path)


def match_spans_glob(pattern: str, key: str = "data.inputs") -> list:
    """The files a glob made of a data-span pattern stands for (`spans.py`): a matched
    directory (a span's directory, local) stands for the supported files below it."""
    if not _is_local(pattern):  # object stores have no directories: files only
        return _match(pattern, pattern, key)
    import glob

    found = []
    for path in sorted(glob.glob(pattern)):
        if os.path.isdir(path) or file_format(path):
            found.extend(match_pattern(path, key))
    return found


def _match(spec: str, pattern: str, key: str) -> list:
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.match([spec])[0].metadata_list
    except BeamIOError as err:
        causes = "; ".join(str(e) for e in err.exception_details.values()) or str(err)
        raise UsageError(f"{key}: cannot list {pattern}: {causes}") from None
    except ValueError:
        scheme = pattern.split("://", 1)[0]
        raise UsageError(f"{key}: {pattern}: no Beam filesystem for {scheme}:// (local "
                         f"paths take no scheme; gs:// needs apache-beam[gcp])") from None


def resolve_raw_files(patterns: tuple[str, ...], key: str = "data.inputs") -> Artifact:
    """The `RawFiles` artifact for `data.inputs` (or another key read like it).

    Args:
        patterns: the configured paths, directories and globs.
        key: the config key they come from, named in errors.

    Returns:
        An artifact whose fingerprint covers every matched file's path, size and mtime,
        whose `files` property lists the paths in sorted order and `sizes` their sizes.
    """
    metadata = {}
    for pattern in patterns:
        for meta in match_pattern(pattern, key):
            metadata[meta.path] = meta
    entries = sorted((m.path, m.size_in_bytes, m.last_updated_in_seconds)
                     for m in metadata.values())
    fingerprint = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return Artifact(type="RawFiles", uri=",".join(patterns), fingerprint=fingerprint,
                    properties={"files": [e[0] for e in entries],
                                "sizes": [e[1] for e in entries],
                                "bytes": sum(e[1] for e in entries)})
