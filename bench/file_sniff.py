"""What ingest's whole-file test (`cleaning.file_skip_reason`) decides on files this
machine has: text in many scripts and encodings, and binaries.

For each group: how many files, how many hold a NUL byte in their first block, the share
of that block's bytes that are not UTF-8 (min, median, max), and the verdicts. Groups
whose files are missing here are left out. The threshold `NOT_UTF8_SHARE` must fall
between the legacy Latin code pages (read line by line) and the rest. The 7-bit encodings
among the legacy CJK texts (ISO-2022, HZ) are ASCII bytes, so they pass as text.

    .venv/bin/python -m bench.file_sniff
"""

from __future__ import annotations

import bz2
import collections
import glob
import gzip
import os
import sys
import sysconfig

from components.ingest.cleaning import SNIFF_BYTES, file_skip_reason

STDLIB = sysconfig.get_paths()["stdlib"]
SITE = sysconfig.get_paths()["purelib"]
TUTOR = "/usr/share/vim/vim*/tutor/"
CJK = os.path.join(STDLIB, "test", "cjkencodings", "*.txt")

GROUPS = {
    "UTF-8 text: vim tutors": [TUTOR + "tutor*utf-8"],
    "UTF-8 CJK: Python's cjkencodings": [CJK.replace("*.txt", "*-utf8.txt")],
    "UTF-8 emoji: rich's emoji table": [os.path.join(SITE, "rich", "_emoji_codes.py")],
    "Python sources (stdlib)": [os.path.join(STDLIB, "*.py")],
    "man pages (gzip, decompressed)": ["/usr/share/man/man1/*.gz"],
    "legacy Latin code pages: vim tutors": [TUTOR + "tutor.cs", TUTOR + "tutor.fr",
                                            TUTOR + "tutor.de", TUTOR + "tutor.pl",
                                            TUTOR + "tutor.it", TUTOR + "tutor.es"],
    "legacy Cyrillic/Greek/CJK: tutors, cjkencodings": [
        TUTOR + "tutor.ru", TUTOR + "tutor.el", TUTOR + "tutor.*.euc", TUTOR + "tutor.*.sjis",
        TUTOR + "tutor.*.big5", CJK],
    "ELF programs (/usr/bin)": ["/usr/bin/*"],
    "shared libraries": ["/usr/lib/x86_64-linux-gnu/*.so*"],
    ".pyc": [os.path.join(STDLIB, "__pycache__", "*.pyc")],
    "PNG images": [os.path.join(SITE, "**", "*.png")],
    "gzip files, read as they are (a .txt that is really compressed)": [
        "/usr/share/man/man1/*.gz"],
    "random bytes": [],
}
PER_GROUP = 200


def first_block(path: str, raw: bool = False) -> bytes:
    """The first `SNIFF_BYTES` of the file's content, decompressed as ingest reads it
    (unless `raw`)."""
    opener = (open if raw else gzip.open if path.endswith(".gz")
              else bz2.open if path.endswith(".bz2") else open)
    with opener(path, "rb") as f:
        return f.read(SNIFF_BYTES)


def group_files(name: str, patterns: list[str]) -> list[str]:
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern, recursive=True)})
    if name.startswith("legacy"):  # cjkencodings holds each text in UTF-8 too
        paths = [p for p in paths if "utf" not in os.path.basename(p)]
    return [p for p in paths if os.path.isfile(p)][:PER_GROUP]


def undecodable_share(block: bytes) -> float:
    kept = len(block.decode("utf-8", "ignore").encode("utf-8"))
    return (len(block) - kept) / len(block)


def blocks(name: str, patterns: list[str]):
    if name == "random bytes":
        random = __import__("random").Random(0)
        yield from (random.randbytes(SNIFF_BYTES) for _ in range(PER_GROUP))
        return
    for path in group_files(name, patterns):
        try:
            block = first_block(path, raw=name.startswith("gzip"))
        except (OSError, EOFError):
            continue
        if block and (not name.startswith("ELF") or block.startswith(b"\x7fELF")):
            yield block  # /usr/bin holds scripts too


def main() -> int:
    for name, patterns in GROUPS.items():
        rows = [(b"\0" in b, undecodable_share(b), file_skip_reason(b) or "text")
                for b in blocks(name, patterns)]
        if not rows:
            continue
        shares = sorted(share for _, share, _ in rows)
        verdicts = collections.Counter(verdict for _, _, verdict in rows)
        print(f"{name}: {len(rows)} files, {sum(n for n, _, _ in rows)} with a NUL; not UTF-8 "
              f"min {shares[0]:.1%}, median {shares[len(shares) // 2]:.1%}, max "
              f"{shares[-1]:.1%}; verdicts " + ", ".join(f"{v} {c}" for v, c in
                                                        sorted(verdicts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
