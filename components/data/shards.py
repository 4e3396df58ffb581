"""Deterministic sharded writing: the same elements give byte-identical files.

Beam's own sinks assign elements to shards at random and keep arrival order, so reruns
differ. Here each element carries a sort key: the key's hash picks the shard and the key
orders the shard's contents, whatever the runner's parallelism or bundle order.
"""

from __future__ import annotations

import gzip
import hashlib
import math

import apache_beam as beam

from components.data import layout

SHARD_TARGET_BYTES = 64 * 2**20


def num_shards_for(num_bytes: int, target_bytes: int = SHARD_TARGET_BYTES) -> int:
    """Shards for `num_bytes` of data: one per `target_bytes`, at least one."""
    return max(1, math.ceil(num_bytes / target_bytes))


def shard_index(sort_key: str, num_shards: int) -> int:
    """The shard an element with `sort_key` goes to (a hash, so shards are balanced)."""
    return int.from_bytes(hashlib.sha256(sort_key.encode("utf-8")).digest()[:8], "big") % num_shards


def write_jsonl_gz(path: str, lines: list[str]) -> None:
    """Write text lines as gzipped UTF-8 with a zero mtime (reproducible bytes)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            for line in lines:
                f.write(line.encode("utf-8"))
                f.write(b"\n")


class TFRecordShardWriter:
    """Writes serialized records to a TFRecord file (tf.io handles gs:// too).

    Args:
        compression: `none` or `gzip`.
    """

    def __init__(self, compression: str):
        self.compression = compression

    def __call__(self, path: str, records: list[bytes]) -> None:
        import tensorflow as tf

        compression = "GZIP" if self.compression == "gzip" else ""
        options = tf.io.TFRecordOptions(compression_type=compression)
        with tf.io.TFRecordWriter(path, options=options) as writer:
            for record in records:
                writer.write(record)


class WriteShards(beam.PTransform):
    """Write `(sort_key, payload)` elements into `<split>-XXXXX-of-NNNNN<suffix>` files.

    Every shard file is written, also an empty one, so the names are known in advance.
    Outputs `(file name, record count)` per shard.

    Args:
        directory: where to write.
        split: the file name prefix (`train`, `eval`).
        num_shards: how many files.
        suffix: file suffix with its dot.
        writer: `writer(path, payloads)` writing one file.
    """

    def __init__(self, directory: str, split: str, num_shards: int, suffix: str, writer):
        super().__init__()
        self.directory = directory
        self.names = layout.shard_names(split, num_shards, suffix)
        self.writer = writer

    def expand(self, pcoll):
        count = len(self.names)
        keyed = pcoll | "AssignShard" >> beam.Map(lambda kv: (shard_index(kv[0], count), kv))
        every = pcoll.pipeline | "EveryShard" >> beam.Create([(i, None) for i in range(count)])
        return ((keyed, every)
                | "Flatten" >> beam.Flatten()
                | "GroupByShard" >> beam.GroupByKey()
                | "WriteShard" >> beam.Map(self._write))

    def _write(self, shard_items):
        shard, items = shard_items
        records = sorted(item for item in items if item is not None)
        name = self.names[shard]
        self.writer(layout.join(self.directory, name), [payload for _, payload in records])
        return name, len(records)


class WriteJson(beam.PTransform):
    """Write a singleton PCollection, formatted by `format_fn`, as one JSON file.

    Args:
        path: the file to write.
        format_fn: element -> JSON-serializable data.
    """

    def __init__(self, path: str, format_fn):
        super().__init__()
        self.path = path
        self.format_fn = format_fn

    def expand(self, pcoll):
        return pcoll | "Write" >> beam.Map(lambda value: layout.write_json(self.path,
                                                                          self.format_fn(value)))
