"""Data spans: `{SPAN}` (and `{VERSION}`) in `data.inputs` patterns, as TFX's ExampleGen
reads them, and the choice of the spans a run trains on (`data.spans`).

A pattern such as `data/day-{SPAN}/*.jsonl` or `data/{SPAN}/v{VERSION}/` stands for every
path where the placeholders are runs of digits. The files of one span number form the
span; when the pattern also has `{VERSION}`, only the files of the span's highest version
are read (a corrected re-delivery replaces the first). Span numbers compare as integers.

The raw input artifact of a run with spans lists every span found up to the last one the
run trains on (ingest needs the earlier ones to drop documents they already had) and
which of them the run trains on; each span's own fingerprint keys its cached ingest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from components.ingest.sources import file_format, match_spans_glob
from pipeline.core.artifacts import Artifact
from pipeline.core.config.data import SPAN, VERSION
from pipeline.core.errors import UsageError

_PLACEHOLDER = re.compile(re.escape(SPAN) + "|" + re.escape(VERSION))


@dataclass
class Span:
    """The files of one span number (of its highest version)."""

    number: int
    version: int | None = None
    files: dict[str, tuple[int, float]] = field(default_factory=dict)  # path -> size, mtime

    def fingerprint(self) -> str:
        """Changes whenever a file of the span is added, removed or rewritten."""
        entries = sorted((path, *meta) for path, meta in self.files.items())
        return hashlib.sha256(json.dumps([self.number, entries]).encode()).hexdigest()

    def to_json(self) -> dict:
        paths = sorted(self.files)
        return {"span": self.number, "version": self.version, "files": paths,
                "sizes": [self.files[p][0] for p in paths], "fingerprint": self.fingerprint()}


def has_spans(patterns) -> bool:
    """Whether the patterns name data spans (the config allows all or none)."""
    return any(SPAN in pattern for pattern in patterns)


def find_spans(patterns: tuple[str, ...], key: str = "data.inputs") -> list[Span]:
    """Every span the patterns match, ascending, each with the files of its highest version.

    Raises:
        UsageError: a pattern matches no file, or matches a file where a placeholder is
            not a run of digits only.
    """
    spans: dict[int, dict[int | None, dict]] = {}
    for pattern in patterns:
        regex = _path_regex(pattern)
        found = 0
        for meta in match_spans_glob(_PLACEHOLDER.sub("*", pattern), key):
            match = regex.match(meta.path)
            if match is None or file_format(meta.path) is None:
                continue
            number = int(match["span"])
            version = int(match["version"]) if "version" in regex.groupindex else None
            spans.setdefault(number, {}).setdefault(version, {})[meta.path] = (
                meta.size_in_bytes, meta.last_updated_in_seconds)
            found += 1
        if not found:
            raise UsageError(f"{key}: {pattern} matches no files where {SPAN} is a number")
    return [_newest(number, versions) for number, versions in sorted(spans.items())]


def _newest(number: int, versions: dict) -> Span:
    version = max(versions, key=lambda v: -1 if v is None else v)
    return Span(number, version, versions[version])


def _path_regex(pattern: str) -> re.Pattern:
    """The pattern as a regular expression over matched paths: `{SPAN}` and `{VERSION}`
    capture digits, glob wildcards match within a path segment, and a directory pattern
    also matches the files below it."""
    parts, position = [], 0
    for placeholder in _PLACEHOLDER.finditer(pattern):
        parts.append(_glob_regex(pattern[position:placeholder.start()]))
        name = "span" if placeholder.group() == SPAN else "version"
        parts.append(f"(?P<{name}>[0-9]+)")
        position = placeholder.end()
    parts.append(_glob_regex(pattern[position:]))
    return re.compile("".join(parts).rstrip("/") + "(?:/.*)?$")


def _glob_regex(text: str) -> str:
    out = []
    for char in text:
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
    return "".join(out)


def choose(spans: list[Span], spans_config) -> list[int]:
    """The span numbers a run trains on (`data.spans`).

    Raises:
        UsageError: the range chooses no span that exists.
    """
    numbers = [span.number for span in spans]
    if spans_config.latest is not None:
        return numbers[-spans_config.latest:]
    first = spans_config.first if spans_config.first is not None else numbers[0]
    last = spans_config.last if spans_config.last is not None else numbers[-1]
    chosen = [n for n in numbers if first <= n <= last]
    if not chosen:
        raise UsageError(f"data.spans: first={spans_config.first}, last={spans_config.last} "
                         f"chooses none of the spans found ({_listed(numbers)})")
    return chosen


def resolve_span_files(data) -> Artifact:
    """The `RawFiles` artifact of a run with data spans.

    Properties: `spans` (each span up to the last chosen: number, version, files, sizes,
    fingerprint), `chosen` (the span numbers trained on), and, as for a run without
    spans, `files`, `sizes` and `bytes` of every listed span.
    """
    spans = find_spans(data.inputs)
    chosen = choose(spans, data.spans)
    listed = [span.to_json() for span in spans if span.number <= chosen[-1]]
    paths = [(path, size) for span in listed for path, size in zip(span["files"], span["sizes"])]
    fingerprint = hashlib.sha256(json.dumps([[s["fingerprint"] for s in listed],
                                             chosen]).encode()).hexdigest()
    return Artifact(type="RawFiles", uri=",".join(data.inputs), fingerprint=fingerprint,
                    properties={"spans": listed, "chosen": chosen,
                                "files": [p for p, _ in paths], "sizes": [s for _, s in paths],
                                "bytes": sum(s for _, s in paths)})


def _listed(numbers: list[int]) -> str:
    if len(numbers) > 8:
        return f"{', '.join(map(str, numbers[:3]))}, ..., {', '.join(map(str, numbers[-3:]))}"
    return ", ".join(map(str, numbers))
