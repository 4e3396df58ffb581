"""The documents artifact (ingest) and the statistics artifact (transform).

documents/:
    train-XXXXX-of-NNNNN.jsonl.gz, eval-...   one JSON object per line, sorted by the
        hash of the text: {"text": str, "domain": str ("" if none), "meta": {other
        scalar JSONL fields}}
    stats.json   counts (files, read, kept, dropped by reason, changed by cleaning step,
                 per split and domain: the `data.max_domains` largest, the rest as
                 `(other)`, `domains_folded` of them), the cleaning settings, and the
                 shard names
golden/ (ingest, the Documents of `evaluation.golden_inputs`, never trained on):
    golden-00000-of-00001.jsonl.gz   the golden documents, cleaned like the corpus,
        deduplicated and sorted by the hash of the text (no file when there is no
        golden set)
    stats.json   {"documents_read", "documents_kept", "dropped" (by reason), "input_files",
                  "splits": {"golden": {"documents", "bytes", "shards"}}}
statistics/ (transform):
    stats.json, length_histogram.png, domain_tokens.png
    spans.json   with data spans: {"spans": [{"span", "role" (trained, replay or
                 reference), "stats": that span's own stats.json}]}

With data spans (`{SPAN}` in `data.inputs`), a run's documents artifact is a view of the
spans it trains on: their shards named by `span_view_name`, and a `stats.json` that adds
up theirs, with `spans` (every span ingested so far: `span`, `version`, `uri` of its own
cached documents artifact, `key`, `reused`, `documents` per split) and `chosen` (the span
numbers trained on).

Paths go through `pipeline/core/files.py`, so any Beam filesystem (local, gs://) works.
"""

from __future__ import annotations

from pipeline.core import files

SPLITS = ("train", "eval")
# The one split of the golden documents artifact.
GOLDEN_SPLIT = "golden"
STATS_FILE = "stats.json"
# transform's statistics of each data span it transformed (see above).
SPANS_FILE = "spans.json"
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


def span_view_name(name: str, span: int, split: str | None = None) -> str:
    """A data span's shard as a run's view artifact names it (documents and examples
    alike): `train-00001-of-00004.x` -> `train-s00003-00001-of-00004.x`, still matched by
    the `<split>-*` globs readers use; `split` renames the split (`replay`)."""
    own, rest = name.split("-", 1)
    return f"{split or own}-s{span:05d}-{rest}"


def split_paths(directory: str, stats: dict, split: str) -> list[str]:
    """The shard paths of `split` listed in an artifact's stats/spec file.

    Args:
        directory: the artifact directory.
        stats: its parsed `stats.json` (documents) or `feature_spec.json` (examples).
        split: `train` or `eval` (`golden` in the golden documents artifact).

    Returns:
        Full paths, in shard order.
    """
    return [files.join(directory, name) for name in stats["splits"][split]["shards"]]


def read_stats(directory: str) -> dict:
    """An artifact's `stats.json` (documents or statistics)."""
    return files.read_json(files.join(directory, STATS_FILE))
