"""Turning raw records into clean documents: decoding, parsing, cleaning, the split.

Pure functions, so each rule is tested without a runner. A raw record is the bytes of one
line (or one whole file, `data.txt_mode: file`) and the format of the file it came from.
Every record yields either a document or the name of the reason it was dropped, plus the
names of the cleaning steps that changed it. Steps, in order (each set in `data.*`):

    decode         UTF-8; a record with a NUL byte, or mostly undecodable, is `binary`;
                   other invalid UTF-8 is dropped or replaced (`invalid_utf8`)
    parse          JSONL: an object with a string `text_field`; other scalar fields kept
    control_chars  C0/C1 control characters other than tab and line breaks removed
    normalization  Unicode NFC or NFKC
    whitespace     `normalize`: CRLF/CR -> LF, trailing spaces/tabs of each line and blank
                   lines at both ends removed; `collapse`: every whitespace run -> one space
    min_chars      shorter documents dropped (`too_short`)

Over-long documents (`data.max_chars`) are split into pieces by `split_long`, and exact
duplicates removed, when the documents are written (see `ingest_beam.WriteDocuments`).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

# Every drop reason, so stats list them all (with zeros) and readers can rely on the keys.
DROP_REASONS = ("empty", "binary", "invalid_utf8", "malformed_json", "not_an_object",
                "missing_text_field", "text_not_string", "too_short", "duplicate")
# Cleaning steps that changed a kept document (counted, not dropped).
CHANGES = ("invalid_utf8_replaced", "control_chars_removed", "unicode_normalized",
           "whitespace_normalized")
_SCALARS = (str, int, float, bool)
# More than this share of U+FFFD after a lenient decode: the record is not text at all.
BINARY_REPLACEMENT_SHARE = 0.1
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HORIZONTAL = " \t\f\v"
_TRAILING_MARKS = tuple(c + "\n" for c in _HORIZONTAL)
# ASCII fast paths (most text): bytes.translate scans ~5x faster than a regex or four
# substring searches. The C0 controls `_CONTROL` matches (ASCII has no C1 controls), and
# horizontal whitespace mapped to a space, so one search finds a trailing one.
_ASCII_CONTROL = bytes(range(0x00, 0x09)) + b"\x0b\x0c" + bytes(range(0x0e, 0x20)) + b"\x7f"
_HORIZONTAL_TO_SPACE = bytes.maketrans(b"\t\f\v", b"   ")


class Cleaner:
    """Applies the configured cleaning steps to raw records.

    Args:
        data: the `DataConfig`.
    """

    def __init__(self, data):
        self.data = data
        self.text_field = data.text_field
        self.domain_field = data.domain_field

    def clean(self, raw: bytes, fmt: str) -> tuple[dict | None, str | None, list[str]]:
        """One raw record -> a document, or the reason it was dropped.

        Args:
            raw: the record's bytes (a line without its line break, or a whole file).
            fmt: `txt` or `jsonl`.

        Returns:
            `(document, None, changes)` with document `{"text", "domain", "meta"}` and
            the names (from `CHANGES`) of the steps that changed it, or
            `(None, reason, changes)` with a reason from `DROP_REASONS`.
        """
        changes = []
        line, reason = decode(raw, self.data.invalid_utf8)
        if line is None:
            return None, reason, changes
        if reason:
            changes.append(reason)
        if fmt == "txt":
            return self._document(line, "", {}, changes)
        if not line.strip():
            return None, "empty", changes
        record, reason = parse_json_record(line, self.text_field, self.domain_field)
        if record is None:
            return None, reason, changes
        return self._document(*record, changes)

    def _document(self, text: str, domain: str, meta: dict, changes: list[str]):
        text = self.clean_text(text, changes)
        if not text.strip():
            return None, "empty", changes
        if len(text) < self.data.min_chars:
            return None, "too_short", changes
        domain = normalize_unicode(domain, self.data.normalization)
        return {"text": text, "domain": domain, "meta": meta}, None, changes

    def clean_text(self, text: str, changes: list[str]) -> str:
        """Control characters, Unicode normalization and whitespace, as configured.

        Args:
            text: the decoded text.
            changes: names of the steps that change the text are appended here.

        Returns:
            The cleaned text.
        """
        data = self.data
        steps = (("control_chars_removed", data.control_chars == "remove", remove_control_chars),
                 ("unicode_normalized", data.normalization != "none",
                  lambda t: normalize_unicode(t, data.normalization)),
                 ("whitespace_normalized", data.whitespace != "keep",
                  lambda t: normalize_whitespace(t, data.whitespace)))
        for name, enabled, step in steps:
            if enabled:
                cleaned = step(text)
                if cleaned != text:
                    changes.append(name)
                    text = cleaned
        return text


def decode(raw: bytes, invalid_utf8: str) -> tuple[str | None, str | None]:
    """UTF-8 bytes -> text (a leading BOM dropped).

    Args:
        raw: the record's bytes.
        invalid_utf8: `drop` or `replace` (`data.invalid_utf8`).

    Returns:
        `(text, None)`; `(text, "invalid_utf8_replaced")` when bytes were replaced;
        or `(None, reason)` with reason `binary` or `invalid_utf8`.
    """
    if b"\x00" in raw:
        return None, "binary"
    try:
        return raw.decode("utf-8").removeprefix("\ufeff"), None
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if text.count("\ufffd") > BINARY_REPLACEMENT_SHARE * len(text):
        return None, "binary"
    if invalid_utf8 == "drop":
        return None, "invalid_utf8"
    return text, "invalid_utf8_replaced"


def parse_json_record(line: str, text_field: str, domain_field: str | None):
    """One JSONL line -> `((text, domain, meta), None)` or `(None, reason)`.

    `meta` keeps the other scalar fields (for slicing); `domain` is "" when absent.
    """
    try:
        record = json.loads(line)
    except ValueError:
        return None, "malformed_json"
    if not isinstance(record, dict):
        return None, "not_an_object"
    if text_field not in record:
        return None, "missing_text_field"
    text = record[text_field]
    if not isinstance(text, str):
        return None, "text_not_string"
    domain = record.get(domain_field) if domain_field else None
    meta = {k: v for k, v in record.items()
            if k not in (text_field, domain_field) and isinstance(v, _SCALARS)}
    return (text, "" if domain is None else str(domain), meta), None


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


def split_long(text: str, max_chars: int) -> list[str]:
    """Cut an over-long text into pieces of at most `max_chars` characters.

    A cut goes after the last line break in the second half of the allowed span, else
    after the last whitespace there, else at the limit; the pieces concatenate back to
    the text exactly.

    Args:
        text: the document text.
        max_chars: `data.max_chars`.

    Returns:
        The pieces (just `[text]` when it is short enough).
    """
    pieces, start = [], 0
    while len(text) - start > max_chars:
        end = start + max_chars
        low = start + max_chars // 2
        cut = text.rfind("\n", low, end) + 1
        if cut <= low:
            cut = max((text.rfind(c, low, end) for c in " \t"), default=-1) + 1
        if cut <= low:
            cut = end
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def document_id(text: str) -> str:
    """The content hash that identifies a document (its sort and deduplication key)."""
    return document_id_of_bytes(text.encode("utf-8"))


def document_id_of_bytes(encoded: bytes) -> str:
    """`document_id` of a text given as its UTF-8 bytes."""
    return hashlib.sha256(encoded).hexdigest()


def split_of(doc_id: str, salt: str, eval_fraction: float) -> str:
    """`eval` or `train`, from a salted hash of a document id.

    The id is the hash of the text, so the split depends on nothing but the text, the
    salt and the fraction: a document keeps its split when the corpus grows, and
    duplicates land in the same split.

    Args:
        doc_id: `document_id(text)`.
        salt: `data.split_salt`.
        eval_fraction: `data.eval_fraction`.

    Returns:
        The split's name.
    """
    digest = hashlib.sha256(f"{salt}\x00{doc_id}".encode("utf-8")).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction else "train"


def assign_split(text: str, salt: str, eval_fraction: float) -> str:
    """`split_of` a text (see there)."""
    return split_of(document_id(text), salt, eval_fraction)


def encode_document(document: dict) -> str:
    """The document's line in a documents shard (stable key order, UTF-8 kept)."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True)
