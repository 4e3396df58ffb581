"""Rows of tabular inputs: Parquet, Arrow (a `datasets` `save_to_disk` directory) and CSV/TSV.

A row is a dict of column -> value, whatever the format, so that one mapping
(`data.text_field`, `domain_field`, `label_field`, `target_field`) names columns
everywhere and cleaning treats every row alike (`cleaning.parse_row`). Text columns are
handed over as the bytes the file holds, not decoded here: a column declared as string
may still hold invalid UTF-8 (Arrow does not check what other writers wrote), and
cleaning applies `data.invalid_utf8` to it as it does to a JSONL line. A record that is
not a row (a CSV line with the wrong number of fields) is `None`.

The readers take an open binary stream (from Beam's `FileSystems`, so any filesystem);
`records.py` chooses them by format and turns their errors into a corrupt file's report.
"""

from __future__ import annotations

import csv
import io
import re

import pyarrow as pa

# csv's default limit (128 KiB per field) would fail on a long document; the field is a
# document, bounded by the file and split later by `data.max_chars`.
CSV_FIELD_LIMIT = 2**31 - 1
# Bytes that are not UTF-8, as `surrogateescape` decoding leaves them.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
# Rows decoded to Python objects at a time: whole row groups (often 128 MB and more) would
# hold every row's bytes, text and document at once; this bounds what a reader holds.
ROWS_PER_BATCH = 256
_PARQUET_MAGIC = b"PAR1"
_ARROW_FILE_MAGIC = b"ARROW1"


def parquet_rows(raw, start: int = 0, end: int | None = None):
    """The rows of the row groups of a Parquet file that start in bytes `[start, end)`
    (as Beam's Parquet source splits a file: every range reads the footer, and a row
    group belongs to the range its first column chunk starts in).

    Args:
        raw: the file, seekable.
        start: the range's first byte.
        end: the range's end (None: the end of the file).
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(as_io(raw))
    metadata = parquet.metadata
    for index in range(metadata.num_row_groups):
        offset = _row_group_offset(metadata.row_group(index))
        if start <= offset and (end is None or offset < end):
            for batch in parquet.iter_batches(batch_size=ROWS_PER_BATCH, row_groups=[index]):
                yield from _rows(batch)


def _row_group_offset(row_group) -> int:
    """Where a row group's data starts in its file."""
    if row_group.num_columns == 0:
        return len(_PARQUET_MAGIC)
    chunk = row_group.column(0)
    return chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset


def arrow_rows(raw):
    """The rows of an Arrow IPC file: the stream format `datasets` writes, or the random
    access file format (which starts with `ARROW1`). The batches before a truncated or
    damaged one are read."""
    from pyarrow import ipc

    raw = as_io(raw)
    if raw.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC:
        raw.seek(0)
        reader = ipc.open_file(raw)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        raw.seek(0)
        batches = ipc.open_stream(raw)
    for batch in batches:
        yield from _rows(batch)


def _rows(table):
    """A table's or record batch's rows as dicts, strings as their bytes, converted
    `ROWS_PER_BATCH` at a time."""
    names = table.schema.names
    for offset in range(0, table.num_rows, ROWS_PER_BATCH):
        part = table.slice(offset, ROWS_PER_BATCH)
        columns = [_undecoded(column).to_pylist() for column in part.columns]
        for values in zip(*columns):
            yield dict(zip(names, values))


def _undecoded(column):
    """A column with strings as their stored bytes (dictionary-encoded ones expanded)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string(column.type):
        return column.cast(pa.binary())
    if pa.types.is_large_string(column.type):
        return column.cast(pa.large_binary())
    return column


def csv_rows(stream, delimiter: str):
    """The rows of a CSV or TSV file with a header, as the csv module reads it (quoted
    fields may hold delimiters, quotes and line breaks). Blank lines are skipped, as
    `csv.DictReader` does; a line whose field count differs from the header's is `None`.

    Args:
        stream: the file's binary content (decompressed).
        delimiter: `,` or a tab.
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(_text_lines(stream), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    for fields in reader:
        if not fields:
            continue
        if len(fields) != len(header):
            yield None
            continue
        yield {name: _cell(value) for name, value in zip(header, fields)}


def csv_header(stream, delimiter: str) -> list[str]:
    """A CSV or TSV file's column names (none for an empty file)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    return next(csv.reader(_text_lines(stream), delimiter=delimiter), [])


def _text_lines(stream):
    """A binary stream's lines as text for the csv module: line endings kept (so quoted
    fields keep theirs), a leading byte order mark dropped, bytes that are not UTF-8 kept
    as `surrogateescape` escapes (`_cell` turns them back). Any object with lines works
    (a Beam or TensorFlow file need not be an `io` stream that `TextIOWrapper` takes)."""
    for number, line in enumerate(stream):
        text = line.decode("utf-8", "surrogateescape")
        yield text.removeprefix("\ufeff") if number == 0 else text


def _cell(value: str):
    """A field as text, or as its bytes when some are not UTF-8 (cleaning decides)."""
    if _ESCAPED_BYTE.search(value):
        return value.encode("utf-8", "surrogateescape")
    return value


def parquet_columns(raw) -> list[str]:
    """A Parquet file's column names, from its footer."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(as_io(raw)).schema_arrow.names


def arrow_columns(raw) -> list[str]:
    """An Arrow IPC file's or stream's column names, from its schema."""
    from pyarrow import ipc

    raw = as_io(raw)
    magic = raw.read(len(_ARROW_FILE_MAGIC))
    raw.seek(0)
    reader = ipc.open_file(raw) if magic == _ARROW_FILE_MAGIC else ipc.open_stream(raw)
    return reader.schema.names


def as_io(raw):
    """A seekable file of any Beam filesystem as the `io` object pyarrow reads (it asks
    for `closed`, `readable()`...; a filesystem's own file object need not have them)."""
    return raw if isinstance(raw, io.IOBase) else io.BufferedReader(_RawFile(raw))


class _RawFile(io.RawIOBase):
    """`io.RawIOBase` over an object with `read`, `seek` and `tell`."""

    def __init__(self, raw):
        self.raw = raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.raw.seek(offset, whence)
        return self.raw.tell()

    def tell(self) -> int:
        return self.raw.tell()
