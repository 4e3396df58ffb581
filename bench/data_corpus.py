"""The data benchmark's corpus: about 100 MB of Python source already on this machine.

Every `.py` file of the standard library and of this interpreter's site-packages is a
candidate; files are taken in the order of a hash of their relative path (a spread over
all packages rather than the alphabetically first ones) until the target size is reached.
One JSONL record per file: `{"text": source, "domain": top-level module, "path": ...}`;
with `--lines-per-document N`, one per N lines of a file, its path `file:first line` (so
`path` is a field with a value per document, as a crawl's URL would be).
Nothing is downloaded and no library code runs.

    python -m bench.data_corpus --output /tmp/lmpipe-bench/corpus --megabytes 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sysconfig
from pathlib import Path

SKIP_DIRS = {"__pycache__"}


def source_files(roots: list[Path]) -> list[tuple[Path, Path]]:
    """`(root, file)` for every `.py` file below the roots, site-packages kept apart."""
    found = []
    for root in roots:
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS
                                and (root.name == "site-packages" or d != "site-packages"))
            found.extend((root, Path(directory, n)) for n in sorted(names) if n.endswith(".py"))
    return found


def domain_of(root: Path, path: Path) -> str:
    """The top-level module a file belongs to (`os` for os.py, `numpy` for numpy/...)."""
    first = path.relative_to(root).parts[0]
    return first.removesuffix(".py")


def build(output: Path, megabytes: float, lines_per_document: int | None = None) -> dict:
    """Write `corpus.jsonl` of about `megabytes` MB of source text.

    Args:
        output: the directory to write.
        megabytes: the target size (10**6 bytes).
        lines_per_document: cut each file into documents of this many lines (None: whole).

    Returns:
        Facts about the corpus: files, documents, bytes, domains.
    """
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    files = source_files(roots)
    files.sort(key=lambda rf: hashlib.sha256(str(rf[1].relative_to(rf[0])).encode()).digest())
    output.mkdir(parents=True, exist_ok=True)
    target, written, documents, domains = megabytes * 1e6, 0, 0, set()
    with open(output / "corpus.jsonl", "w", encoding="utf-8") as out:
        for root, path in files:
            if written >= target:
                break
            text = path.read_bytes().decode("utf-8", errors="replace")
            domain = domain_of(root, path)
            for start, piece in _pieces(text, lines_per_document):
                name = str(path.relative_to(root)) + (f":{start}" if lines_per_document else "")
                line = json.dumps({"text": piece, "domain": domain, "path": name},
                                  ensure_ascii=False)
                out.write(line + "\n")
                written += len(line.encode("utf-8")) + 1
                documents += 1
            domains.add(domain)
    return {"documents": documents, "bytes": written, "domains": len(domains)}


def _pieces(text: str, lines: int | None) -> list[tuple[int, str]]:
    """`(first line number, text)` of each document a file makes."""
    if lines is None:
        return [(1, text)]
    rows = text.splitlines(keepends=True)
    return [(i + 1, "".join(rows[i:i + lines])) for i in range(0, len(rows), lines)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--lines-per-document", type=int, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(build(args.output, args.megabytes, args.lines_per_document)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
