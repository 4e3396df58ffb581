"""transform as a Beam pipeline: read documents, tokenize, pack, write TFRecords and stats."""

from __future__ import annotations

import json

import apache_beam as beam

from components.data import counts, examples, layout, shards
from components.data.packing import PackWindows
from components.data.tokenize import TokenizeDocuments


class ReadDocuments(beam.PTransform):
    """Documents shards (`*.jsonl.gz`) -> document dicts.

    Args:
        paths: the shard paths.
    """

    def __init__(self, paths: list[str]):
        super().__init__()
        self.paths = paths

    def expand(self, pbegin):
        return (pbegin
                | "Shards" >> beam.Create(self.paths)
                | "ReadLines" >> beam.io.ReadAllFromText()
                | "Parse" >> beam.Map(json.loads))


def document_counts(document: dict) -> dict:
    """A tokenized document's contribution to the statistics."""
    text_tokens = len(document["tokens"]) - 2
    return {("documents",): 1, ("text_tokens",): text_tokens, ("bytes",): document["bytes"],
            ("unknown",): document["unknown"], ("domain", document["domain"], "documents"): 1}


def window_counts(window: dict) -> dict:
    """A packed window's contribution to the statistics."""
    tokens = int((window["segment_ids"] != 0).sum())
    return {("examples",): 1, ("tokens",): tokens, ("slots",): len(window["segment_ids"]),
            ("domain", window["domain"], "tokens"): tokens,
            ("domain", window["domain"], "examples"): 1}


class SplitCounts(beam.PTransform):
    """Tokenized documents and windows -> count dicts keyed under the split's name."""

    def __init__(self, split: str):
        super().__init__()
        self.split = split

    def expand(self, parts):
        tokenized, windows = parts
        split = self.split
        return ((tokenized | "Documents" >> beam.Map(document_counts),
                 windows | "Windows" >> beam.Map(lambda kv: window_counts(kv[1])))
                | "Flatten" >> beam.Flatten()
                | "UnderSplit" >> beam.Map(lambda c: {(split, *k): v for k, v in c.items()}))


def summarize(total: dict) -> dict:
    """Statistics of one split (or all) from counts with split-free keys.

    Returns:
        documents, examples, tokens (non-pad slots, bos/eos included), text_tokens, bytes,
        tokens_per_byte (text tokens per UTF-8 byte), packing_efficiency (non-pad slots /
        all slots), unknown_tokens, unknown_token_rate (per text token), and per domain:
        documents, examples, tokens.
    """
    domains = {}
    for key, value in total.items():
        if key[0] == "domain":
            domains.setdefault(key[1], {"documents": 0, "examples": 0, "tokens": 0})[key[2]] = value

    def get(name):
        return total.get((name,), 0)

    return {
        "documents": get("documents"), "examples": get("examples"), "tokens": get("tokens"),
        "text_tokens": get("text_tokens"), "bytes": get("bytes"),
        "tokens_per_byte": counts.ratio(get("text_tokens"), get("bytes")),
        "packing_efficiency": counts.ratio(get("tokens"), get("slots")),
        "unknown_tokens": get("unknown"),
        "unknown_token_rate": counts.ratio(get("unknown"), get("text_tokens")),
        "domains": domains,
    }


def format_statistics(total: dict, sequence_length: int) -> dict:
    """`statistics/stats.json`: per split and over all splits."""
    splits = {split: summarize({k[1:]: v for k, v in total.items() if k[0] == split})
              for split in layout.SPLITS}
    overall = {}
    for key, value in total.items():
        counts.add_counts(overall, {key[1:]: value})
    return {"sequence_length": sequence_length, "splits": splits, "total": summarize(overall)}


def build_transform(pipeline, documents_dir: str, documents_stats: dict, tokenizer_dir: str,
                    pad_id: int, transform, examples_dir: str, statistics_dir: str) -> dict:
    """Add the transform stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        documents_dir: the documents artifact directory.
        documents_stats: its parsed `stats.json`.
        tokenizer_dir: the tokenizer artifact directory.
        pad_id: the tokenizer's pad id.
        transform: the `TransformConfig`.
        examples_dir: where to write the TFRecords.
        statistics_dir: where to write `stats.json`.

    Returns:
        split -> list of the shard file names it will write.
    """
    suffix = examples.TFRECORD_SUFFIX
    writer = shards.TFRecordShardWriter(transform.compression)
    shard_names, all_counts = {}, []
    for split in layout.SPLITS:
        s = split.title()
        split_stats = documents_stats["splits"][split]
        num_shards = shards.num_shards_for(split_stats["bytes"])
        shard_names[split] = layout.shard_names(split, num_shards, suffix)
        domain_bytes = {d: v["bytes"] for d, v in split_stats["domains"].items()}
        tokenized = (pipeline
                     | f"Read{s}" >> ReadDocuments(layout.split_paths(documents_dir,
                                                                     documents_stats, split))
                     | f"Tokenize{s}" >> TokenizeDocuments(tokenizer_dir))
        windows = tokenized | f"Pack{s}" >> PackWindows(split, transform.sequence_length, pad_id,
                                                       domain_bytes)
        _ = (windows
             | f"Serialize{s}" >> beam.Map(lambda kv: (kv[0], examples.serialize_window(kv[1])))
             | f"Write{s}" >> shards.WriteShards(examples_dir, split, num_shards, suffix, writer))
        all_counts.append((tokenized, windows) | f"Count{s}" >> SplitCounts(split))
    _ = (all_counts
         | "AllCounts" >> beam.Flatten()
         | "Count" >> counts.CountAll()
         | "WriteStatistics" >> shards.WriteJson(
             layout.join(statistics_dir, layout.STATS_FILE),
             lambda total: format_statistics(total, transform.sequence_length)))
    return shard_names
