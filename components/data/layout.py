"""File names inside the data artifacts, and reading/writing their JSON files.

documents/ (ingest):
    train-XXXXX-of-NNNNN.jsonl.gz, eval-...   one JSON object per line, sorted by the
        hash of the text: {"text": str, "domain": str ("" if none), "meta": {other
        scalar JSONL fields}}
    stats.json   counts (files, read, kept, dropped by reason, changed by cleaning step,
                 per split and domain: the `data.max_domains` largest, the rest as
                 `(other)`, `domains_folded` of them), the cleaning settings, and the
                 shard names
examples/ (transform):
    train-XXXXX-of-NNNNN.tfrecord, eval-...   see `examples.py` for the features
    feature_spec.json
statistics/ (transform):
    stats.json, length_histogram.png, domain_tokens.png

All paths go through Beam's `FileSystems`, so any Beam filesystem (local, gs://) works.
"""

from __future__ import annotations

import json
import posixpath

SPLITS = ("train", "eval")
STATS_FILE = "stats.json"
FEATURE_SPEC_FILE = "feature_spec.json"
DOCUMENTS_SUFFIX = ".jsonl.gz"


def shard_names(split: str, num_shards: int, suffix: str) -> list[str]:
    """The file names of a split's shards, e.g. `train-00000-of-00002.jsonl.gz`.

    Args:
        split: `train` or `eval`.
        num_shards: how many shards the split has.
        suffix: the file suffix including its dot.

    Returns:
        The names, in shard order.
    """
    return [f"{split}-{i:05d}-of-{num_shards:05d}{suffix}" for i in range(num_shards)]


def join(directory: str, *parts: str) -> str:
    """Join a (local or URL) directory and names."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(directory, *parts) if parts else directory


def read_json(path: str):
    """Read a JSON file from any Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def write_json(path: str, data) -> None:
    """Write `data` as sorted, indented JSON to any Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with FileSystems.create(path, mime_type="application/json") as f:
        f.write(text.encode("utf-8"))


def split_paths(directory: str, stats: dict, split: str) -> list[str]:
    """The shard paths of `split` listed in an artifact's stats/spec file.

    Args:
        directory: the artifact directory.
        stats: its parsed `stats.json` (documents) or `feature_spec.json` (examples).
        split: `train` or `eval`.

    Returns:
        Full paths, in shard order.
    """
    return [join(directory, name) for name in stats["splits"][split]["shards"]]


def basename(path: str) -> str:
    """The last component of a local path or URL."""
    return posixpath.basename(path.rstrip("/"))


def write_bytes(path: str, data: bytes) -> None:
    """Write a file on any Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(data)
