"""Deterministic sharded files: the same elements give byte-identical files.

Beam's own sinks assign elements to shards at random and keep arrival order, so reruns
differ. Here an element's shard is a hash of its key and a shard's content is sorted (or
produced in a fixed order by one DoFn call), whatever the runner's parallelism or bundle
order. Files go through Beam's `FileSystems` (local, gs://); TFRecords are framed here
(length, masked CRC32C) so that writing them needs no TensorFlow.
"""

from __future__ import annotations

import gzip
import math
import struct

import apache_beam as beam
import numpy as np

from components.shared.example_wire import interleave, lookup
from pipeline.core import files

SHARD_TARGET_BYTES = 64 * 2**20
DOCUMENTS_GZIP_LEVEL = 1  # documents are an intermediate: fast beats small
TFRECORD_GZIP_LEVEL = 6
_CRC_MASK_DELTA = 0xA282EAD8
_WRITE_CHUNK = 1 << 20


def num_shards_for(num_bytes: float, target_bytes: int = SHARD_TARGET_BYTES) -> int:
    """Shards for `num_bytes` of data: one per `target_bytes`, at least one."""
    return max(1, math.ceil(num_bytes / target_bytes))


def create(path: str):
    """A binary file for writing on any Beam filesystem, its bytes as given (Beam gzips
    nothing by the name's suffix)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_read(path: str):
    """A binary file for reading on any Beam filesystem, its bytes as stored (Beam unzips
    nothing by the name's suffix)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def gzip_writer(raw, level: int):
    """Gzip over `raw` with a zero mtime and no file name (reproducible bytes)."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level)


def write_jsonl_gz(path: str, lines: list[str]) -> None:
    """Write text lines as gzipped UTF-8 (reproducible bytes)."""
    with create(path) as raw, gzip_writer(raw, DOCUMENTS_GZIP_LEVEL) as f:
        chunk, size = [], 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _WRITE_CHUNK:
                f.write(("\n".join(chunk) + "\n").encode("utf-8"))
                chunk, size = [], 0
        if chunk:
            f.write(("\n".join(chunk) + "\n").encode("utf-8"))


def read_jsonl_gz_lines(path: str):
    """Yield the lines (bytes, without the line break) of a gzipped JSONL file."""
    with open_read(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as f:
        for line in f:
            yield line.rstrip(b"\n")


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data`."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _length_header(size: int) -> bytes:
    length = struct.pack("<Q", size)
    return length + struct.pack("<I", masked_crc32c(length))


def tfrecord_frames(data: np.ndarray, sizes: np.ndarray, order: np.ndarray | None = None) -> bytes:
    """Records in TFRecord framing: length, its masked CRC, data, the data's masked CRC.

    Args:
        data: uint8 buffer of the records, back to back.
        sizes: each record's size.
        order: the order to write them in (default: as they are).

    Returns:
        The framed bytes.
    """
    import google_crc32c

    ends = np.cumsum(sizes)
    starts = ends - sizes
    if order is not None:
        starts, sizes = starts[order], sizes[order]
    blob = data.tobytes()
    crcs = np.array([google_crc32c.value(blob[s:s + n])
                     for s, n in zip(starts.tolist(), sizes.tolist())], np.uint64)
    masked = (((crcs >> 15) | (crcs << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF
    footers = masked.astype("<u4").view(np.uint8)
    count = len(crcs)
    framed = interleave([lookup(sizes.tolist(), _length_header), (data, starts, sizes),
                         (footers, np.arange(count, dtype=np.int64) * 4,
                          np.full(count, 4, np.int64))])
    return framed.tobytes()


class TFRecordFile:
    """A TFRecord file being written (a context manager).

    Args:
        path: the file (any Beam filesystem).
        gzip: gzip the file (what `tf.data.TFRecordDataset` reads as GZIP).
    """

    def __init__(self, path: str, gzip: bool):
        self.path = path
        self.gzip = gzip
        self.count = 0

    def __enter__(self):
        self.raw = create(self.path)
        self.out = gzip_writer(self.raw, TFRECORD_GZIP_LEVEL) if self.gzip else self.raw
        return self

    def write(self, data: np.ndarray, sizes: np.ndarray, order: np.ndarray | None = None) -> None:
        """Append records given as one buffer and their sizes (see `tfrecord_frames`)."""
        if len(sizes):
            self.out.write(tfrecord_frames(data, sizes, order))
        self.count += len(sizes)

    def __exit__(self, *exc):
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()
        return False


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
        return pcoll | "Write" >> beam.Map(lambda value: files.write_json(self.path,
                                                                          self.format_fn(value)))
