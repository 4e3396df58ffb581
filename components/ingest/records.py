"""Reading raw records from input files on any Beam filesystem.

A record is the bytes of one line (line break and a CR before it removed) or, for `.txt`
files in `data.txt_mode: file`, of the whole file. Uncompressed files in line mode are
read in byte ranges so that one large file is read in parallel; a range owns the lines
that start inside it. `.gz` and `.bz2` files are read whole; a corrupt or truncated one
keeps the records decoded before the damage and is reported by name, never raised.

Every range first reads the start of its file's (decompressed) content and skips the file
when that is not text (`cleaning.file_skip_reason`): all ranges of a file judge the same
bytes, so the file is skipped whole or read whole, whatever the runner's parallelism.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from dataclasses import dataclass

from components.ingest.cleaning import SNIFF_BYTES, file_skip_reason
from components.ingest.sources import file_format

RANGE_BYTES = 64 * 2**20
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


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
        whole = (compression_of(path) or size <= range_bytes
                 or (txt_mode == "file" and file_format(path) == "txt"))
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
        self.whole_file = txt_mode == "file" and file_format(file_range.path) == "txt"
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
        compression = compression_of(self.range.path)
        if compression:
            stream = (gzip.GzipFile(fileobj=raw, mode="rb") if compression == "gz"
                      else bz2.BZ2File(raw, mode="rb"))
            with stream:
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

    def _split(self, stream, end: int | None = None):
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
