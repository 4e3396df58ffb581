"""The documents ingest keeps out of both splits, and why: the golden eval set's (drop
reason `golden`) and, with data spans, every earlier span's (`earlier_span`).

The golden set is small and its ids travel with the pipeline. Earlier spans' ids are many
(all the history's) and stay in their span artifacts' `ids.txt.gz` files, which each
worker reads once in `setup` (through Beam's filesystems, so on Dataflow too): pickled
into the pipeline they would be serialized with every bundle, a cost that grows with the
history (measured: 6 of 10 seconds of a 5 MB span's ingest after nine spans).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

from pipeline.core import files

IDS_FILE = "ids.txt.gz"


@dataclass(frozen=True)
class Exclusions:
    """Document ids to drop, each with its drop reason.

    Attributes:
        ids: document id -> drop reason, given here.
        id_files: `(path of an ids file, drop reason)`, read by `load`.
    """

    ids: dict[str, str] = field(default_factory=dict)
    id_files: tuple[tuple[str, str], ...] = ()

    def with_file(self, path: str, reason: str) -> "Exclusions":
        """These exclusions and the ids of one more file."""
        return Exclusions(self.ids, (*self.id_files, (path, reason)))

    def load(self) -> dict[str, str]:
        """Every excluded id with its reason (the ids given first win)."""
        loaded = {}
        for path, reason in self.id_files:
            loaded.update(dict.fromkeys(read_ids(path), reason))
        return {**loaded, **self.ids}


def write_ids(path: str, ids: list[str]) -> None:
    """An ids file: sorted ids, one per line, gzipped reproducibly (no time in the header)."""
    text = "".join(f"{i}\n" for i in sorted(ids))
    files.write_bytes(path, gzip.compress(text.encode("ascii"), mtime=0))


def read_ids(path: str) -> list[str]:
    return gzip.decompress(files.read_bytes(path)).decode("ascii").split()
