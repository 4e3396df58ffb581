"""The text cleaning steps ingest applies to documents, and transform to text-to-text targets
(so that a target is cleaned exactly as the inputs were): control characters, Unicode
normalization, whitespace. Which steps run is `data.*` (`components/ingest/cleaning.py`).
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HORIZONTAL = " \t\f\v"
_TRAILING_MARKS = tuple(c + "\n" for c in _HORIZONTAL)
# ASCII fast paths (most text): bytes.translate scans ~5x faster than a regex or four
# substring searches. The C0 controls `_CONTROL` matches (ASCII has no C1 controls), and
# horizontal whitespace mapped to a space, so one search finds a trailing one.
_ASCII_CONTROL = bytes(range(0x00, 0x09)) + b"\x0b\x0c" + bytes(range(0x0e, 0x20)) + b"\x7f"
_HORIZONTAL_TO_SPACE = bytes.maketrans(b"\t\f\v", b"   ")


def remove_control_chars(text: str) -> str:
    """Drop C0 and C1 control characters except tab, line feed and carriage return."""
    if text.isascii():
        encoded = text.encode("ascii")
        if len(encoded.translate(None, _ASCII_CONTROL)) == len(encoded):
            return text
    return _CONTROL.sub("", text) if _CONTROL.search(text) else text


def normalize_unicode(text: str, form: str) -> str:
    """`NFC`/`NFKC` normalization (`none` leaves the text as it is)."""
    return text if form == "none" else unicodedata.normalize(form, text)


def normalize_whitespace(text: str, mode: str) -> str:
    """Whitespace cleaning.

    Args:
        text: the text.
        mode: `normalize` (line breaks to LF, no trailing spaces or tabs on a line, no
            blank lines at either end; indentation kept) or `collapse` (each run of
            whitespace, line breaks included, becomes one space; both ends stripped).

    Returns:
        The cleaned text.
    """
    if mode == "collapse":
        return " ".join(text.split())
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _has_trailing_horizontal(text):
        text = "\n".join(line.rstrip(_HORIZONTAL) for line in text.split("\n"))
    return text.strip("\n")


def _has_trailing_horizontal(text: str) -> bool:
    """Whether a line of `text` (the last one included) ends in a space, tab, FF or VT."""
    if text.isascii():
        spaced = text.encode("ascii").translate(_HORIZONTAL_TO_SPACE)
        return spaced.endswith(b" ") or b" \n" in spaced
    return text.endswith(tuple(_HORIZONTAL)) or any(mark in text for mark in _TRAILING_MARKS)
