"""Reading raw records from input files on any Beam filesystem.

A record of a line format (`.txt`, `.jsonl`) is the bytes of one line (line break and a
CR before it removed) or, for `.txt` files in `data.txt_mode: file`, of the whole file.
A record of a row format (CSV/TSV, Parquet, Arrow, TFRecord of `tf.train.Example`) is a
row, a dict of column -> value (`tables.py`, `tfrecords.py`), or None for one that does
not parse. Uncompressed line files and Parquet files are read in byte ranges so that one
large file is read in parallel: a range owns the lines, or the Parquet row groups, that
start inside it. Other files are read whole (`.gz`, `.bz2`, CSV, whose quoted fields may
hold line breaks, Arrow streams, TFRecords, which have no sync marks); a corrupt or
truncated one keeps the records decoded before the damage and is reported by name, never
raised.

Each file is read through Beam's `FileSystems` inside the ingest step rather than by
Beam's per-format sources (`ReadFromParquet`, `ReadFromTFRecord`): those fail the whole
job on one damaged file, where ingest keeps the good records and names the file.

Every range of a text file (lines, CSV) first reads the start of its file's
(decompressed) content and skips the file when that is not text
(`cleaning.file_skip_reason`): all ranges of a file judge the same bytes, so the file is
skipped whole or read whole, whatever the runner's parallelism.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import zlib
from dataclasses import dataclass

import pyarrow as pa

from components.ingest import tables, tfrecords
from components.ingest.cleaning import SNIFF_BYTES, file_skip_reason
from components.ingest.sources import file_format
from pipeline.core.errors import UsageError

RANGE_BYTES = 64 * 2**20
# What a damaged file raises while it is read: it is reported as corrupt, never raised.
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, csv.Error, pa.ArrowException)
LINE_FORMATS = ("txt", "jsonl")
# Formats whose files may be read in byte ranges (uncompressed, line mode for .txt).
SPLITTABLE_FORMATS = ("txt", "jsonl", "parquet")
# Formats that are not text: no text sniffing, and their own readers.
BINARY_FORMATS = ("parquet", "arrow", "tfrecord")
_DELIMITERS = {"csv": ",", "tsv": "\t"}


def _decoded_head(stream) -> bytes:
    """The first `SNIFF_BYTES` a decompressing `stream` gives, or as many as decode before
    the damage of a corrupt file: `read(n)` would raise and drop them, and with them every
    record before the damage (reading the lines raises again there, and is reported)."""
    head = b""
    try:
        while len(head) < SNIFF_BYTES:
            chunk = stream.read1(SNIFF_BYTES - len(head))
            if not chunk:
                break
            head += chunk
    except _READ_ERRORS:
        pass
    return head


@dataclass(frozen=True)
class FileRange:
    """Bytes `[start, end)` of an input file (`end` None: to the end of the file)."""

    path: str
    start: int = 0
    end: int | None = None


def compression_of(path: str) -> str:
    """`gz`, `bz2` or `` from the file name."""
    name = path.lower()
    for suffix in ("gz", "bz2"):
        if name.endswith("." + suffix):
            return suffix
    return ""


def plan_ranges(files: list[tuple[str, int]], txt_mode: str,
                range_bytes: int = RANGE_BYTES) -> list[FileRange]:
    """The ranges to read: byte ranges of large uncompressed line files, else whole files.

    Args:
        files: `(path, size in bytes)` of the matched inputs.
        txt_mode: `data.txt_mode`.
        range_bytes: the largest range.

    Returns:
        Ranges, in file order.
    """
    ranges = []
    for path, size in files:
        fmt = file_format(path)
        whole = (compression_of(path) or size <= range_bytes
                 or fmt not in SPLITTABLE_FORMATS or (txt_mode == "file" and fmt == "txt"))
        if whole:
            ranges.append(FileRange(path))
        else:
            ranges.extend(FileRange(path, start, min(start + range_bytes, size))
                          for start in range(0, size, range_bytes))
    return ranges


class RecordReader:
    """Iterates over the records of one range; afterwards `error` says what went wrong,
    and `skipped` why the file was not read (`binary`, `not_utf8`) if it was not.

    Args:
        file_range: what to read.
        txt_mode: `data.txt_mode`.
    """

    def __init__(self, file_range: FileRange, txt_mode: str):
        self.range = file_range
        self.format = file_format(file_range.path)
        self.whole_file = txt_mode == "file" and self.format == "txt"
        self.error: str | None = None
        self.skipped: str | None = None

    def __iter__(self):
        from components.shared.shards import open_read

        try:
            with open_read(self.range.path) as raw:
                yield from self._records(raw)
        except _READ_ERRORS as err:
            self.error = f"{err.__class__.__name__}: {err}"

    def _records(self, raw):
        if self.format in BINARY_FORMATS:
            yield from self._binary_rows(raw)
            return
        compression = compression_of(self.range.path)
        if compression:
            with decompressed(raw, compression) as stream:
                if self._is_text(stream, _decoded_head(stream)):
                    yield from self._split(stream)
            return
        if not self._is_text(raw, raw.read(SNIFF_BYTES)):
            return
        if self.range.start:
            raw.seek(self.range.start - 1)
            raw.readline()  # the line that started before the range belongs to the previous
        yield from self._split(raw, self.range.end)

    def _is_text(self, stream, head: bytes) -> bool:
        """Judge the file by `head`, its first block, then rewind `stream` to its start."""
        self.skipped = file_skip_reason(head)
        stream.seek(0)
        return self.skipped is None

    def _binary_rows(self, raw):
        if self.format == "tfrecord":
            with decompressed(raw, compression_of(self.range.path)) as stream:
                yield from tfrecords.example_rows(stream)
            return
        if not raw.read(1):
            return  # an empty file is counted as empty, not as a corrupt table
        raw.seek(0)
        if self.format == "parquet":
            yield from tables.parquet_rows(raw, self.range.start, self.range.end)
        else:
            yield from tables.arrow_rows(raw)

    def _split(self, stream, end: int | None = None):
        if self.format in _DELIMITERS:
            yield from tables.csv_rows(stream, _DELIMITERS[self.format])
            return
        if self.whole_file:
            yield stream.read()
            return
        position = stream.tell() if end is not None else 0
        for line in stream:
            if end is not None:
                if position >= end:
                    return
                position += len(line)
            yield line.rstrip(b"\n").removesuffix(b"\r")


def decompressed(raw, compression: str):
    """`raw` read through its compression (`gz`, `bz2` or `` for none)."""
    if compression == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    return contextlib.nullcontext(raw)


def columns_of(path: str) -> list[str] | None:
    """The column (feature) names of a row-format file: a table's schema or header, a
    TFRecord's first Example's features; None for a line format or a file that cannot
    be read (the reader reports it as corrupt)."""
    from components.shared.shards import open_read

    fmt = file_format(path)
    if fmt in LINE_FORMATS:
        return None
    try:
        with open_read(path) as raw, decompressed(raw, compression_of(path)) as stream:
            if fmt in _DELIMITERS:
                return tables.csv_header(stream, _DELIMITERS[fmt])
            if fmt == "tfrecord":
                return tfrecords.example_features(stream)
            if not stream.read(1):
                return []
            stream.seek(0)
            return (tables.parquet_columns if fmt == "parquet" else tables.arrow_columns)(stream)
    except _READ_ERRORS:
        return None


def require_fields(paths: list[str], data, key: str = "data.inputs") -> None:
    """Refuse a row-format file without a column the config names, before any is read.

    Every named field (`data.text_field`, and `domain_field`, `label_field`,
    `target_field` when set) must be a column of a table's schema or header; a TFRecord
    has no schema, so only the text feature is looked for, in its first Example. An empty
    or unreadable file is left to the reader (counted as empty, or reported as corrupt).

    Args:
        paths: the matched input files.
        data: the `DataConfig`.
        key: the config key the files come from, named in the error.

    Raises:
        UsageError: naming the file, the missing column and the columns it has.
    """
    named = {"text_field": data.text_field, "domain_field": data.domain_field,
             "label_field": data.label_field, "target_field": data.target_field}
    for path in paths:
        columns = columns_of(path)
        if not columns:
            continue
        wanted = named if file_format(path) != "tfrecord" else {"text_field": data.text_field}
        for setting, column in wanted.items():
            if column is not None and column not in columns:
                raise UsageError(f"data.{setting}: {path} (from {key}) has no column "
                                 f"{column!r}; its columns: {', '.join(columns)}")
