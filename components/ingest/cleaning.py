"""Turning raw records into clean documents: decoding, parsing, cleaning, the split.

Pure functions, so each rule is tested without a runner. A raw record is the bytes of one
line (or one whole file, `data.txt_mode: file`) and the format of the file it came from.
Every record yields either a document or the name of the reason it was dropped, plus the
names of the cleaning steps that changed it. Before any record, a whole file is skipped
when its first block is not text (`file_skip_reason`: `binary` or `not_utf8`). Steps, in
order (each set in `data.*`):

    decode         UTF-8; a record with a NUL byte, or mostly undecodable, is `binary`;
                   other invalid UTF-8 is dropped or replaced (`invalid_utf8`)
    parse          JSONL: an object with a string `text_field` (unparsable, too deeply
                   nested: `malformed_json`); lone surrogate escapes (`\\ud800`) are
                   invalid UTF-8, dropped or replaced as above; a domain that is not a
                   finite scalar is missing (`domain_invalid`); other scalar fields
                   kept in `meta`, non-finite numbers (NaN, Infinity) left out
                   (`non_finite_removed`). A row of a table (`parse_row`) follows the
                   same rules, its named fields decoded under `invalid_utf8`
    control_chars  C0/C1 control characters other than tab and line breaks removed
    normalization  Unicode NFC or NFKC
    whitespace     `normalize`: CRLF/CR -> LF, trailing spaces/tabs of each line and blank
                   lines at both ends removed; `collapse`: every whitespace run -> one space
    min_chars      shorter documents dropped (`too_short`)

The control_chars, normalization and whitespace steps are in
`components/shared/text_cleaning.py` (transform cleans text-to-text targets with them too).

Over-long documents (`data.max_chars`) are split into pieces by `split_long`, and exact
duplicates removed, when the documents are written (see `ingest_beam.WriteShard`).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import re

from components.shared.text_cleaning import (normalize_unicode, normalize_whitespace,
                                               remove_control_chars)

# Every drop reason, so stats list them all (with zeros) and readers can rely on the keys.
# `golden`: the document is in the golden eval set (`evaluation.golden_inputs`);
# `earlier_span`: with data spans, an earlier span has the same document;
# `malformed_record`: a row-format record that does not parse (a TFRecord record that is
# not a tf.train.Example, a CSV line with more or fewer fields than the header).
DROP_REASONS = ("empty", "binary", "invalid_utf8", "malformed_json", "malformed_record",
                "not_an_object", "missing_text_field", "text_not_string", "too_short",
                "duplicate", "golden", "earlier_span")
# Cleaning steps that changed a kept document (counted, not dropped).
CHANGES = ("invalid_utf8_replaced", "control_chars_removed", "unicode_normalized",
           "whitespace_normalized", "non_finite_removed", "domain_invalid")
# Why a whole input file is skipped unread (see `file_skip_reason`).
FILE_SKIP_REASONS = ("binary", "not_utf8")
_SCALARS = (str, int, float, bool)
# More than this share of U+FFFD after a lenient decode: the record is not text at all.
BINARY_REPLACEMENT_SHARE = 0.1
# A file is judged by the first SNIFF_BYTES of its decompressed content (git's binary test
# reads 8000). Measured on that block: every binary tried (ELF programs and libraries, .pyc,
# gzip, PNG, random bytes) holds a NUL byte; UTF-8 text of any script, CJK and emoji
# included, has no undecodable byte; Latin-script text in legacy 8-bit code pages has at
# most 9.5% (Czech cp1250), Cyrillic, Greek and CJK code pages 34% to 62%. The threshold
# sits between, so the first are read line by line (`data.invalid_utf8`) and the second
# are skipped whole.
SNIFF_BYTES = 8192
NOT_UTF8_SHARE = 0.2
_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)
# Only a JSON escape makes a lone surrogate (a UTF-8 decode never does): this gates the
# search of a parsed record for one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Cleaner:
    """Applies the configured cleaning steps to raw records.

    Args:
        data: the `DataConfig`.
    """

    def __init__(self, data):
        self.data = data
        self.text_field = data.text_field
        self.domain_field = data.domain_field

    def clean(self, raw: bytes | dict | None, fmt: str) -> tuple[dict | None, str | None,
                                                                  list[str]]:
        """One raw record -> a document, or the reason it was dropped.

        Args:
            raw: the record's bytes (a line without its line break, or a whole file), or
                a row of a row format (a dict; None when it did not parse).
            fmt: the file's format (`txt`, `jsonl`, or a row format).

        Returns:
            `(document, None, changes)` with document `{"text", "domain", "meta"}` and
            the names (from `CHANGES`) of the steps that changed it, or
            `(None, reason, changes)` with a reason from `DROP_REASONS`.
        """
        changes = []
        if raw is None or isinstance(raw, dict):
            record, reason = (parse_row(raw, self.data, changes) if raw is not None
                              else (None, "malformed_record"))
            return self._document(*record, changes) if record else (None, reason, changes)
        line, reason = decode(raw, self.data.invalid_utf8)
        if line is None:
            return None, reason, changes
        if reason:
            changes.append(reason)
        if fmt == "txt":
            return self._document(line, "", {}, changes)
        if not line.strip():
            return None, "empty", changes
        record, reason = parse_json_record(line, self.text_field, self.domain_field, changes)
        if record is not None and "\\u" in line and _SURROGATE_ESCAPE.search(line):
            record, reason = repair_surrogates(record, self.data.invalid_utf8, changes)
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


def decode(raw: bytes, invalid_utf8: str, bom: bool = True) -> tuple[str | None, str | None]:
    """UTF-8 bytes -> text (a leading BOM dropped).

    Args:
        raw: the record's bytes.
        invalid_utf8: `drop` or `replace` (`data.invalid_utf8`).
        bom: drop a leading byte order mark (a file's, at the start of a line); a table's
            value keeps it, as a JSONL string does.

    Returns:
        `(text, None)`; `(text, "invalid_utf8_replaced")` when bytes were replaced;
        or `(None, reason)` with reason `binary` or `invalid_utf8`.
    """
    if b"\x00" in raw:
        return None, "binary"
    mark = "\ufeff" if bom else ""
    try:
        return raw.decode("utf-8").removeprefix(mark), None
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace").removeprefix(mark)
    if text.count("\ufffd") > BINARY_REPLACEMENT_SHARE * len(text):
        return None, "binary"
    if invalid_utf8 == "drop":
        return None, "invalid_utf8"
    return text, "invalid_utf8_replaced"


def file_skip_reason(head: bytes) -> str | None:
    """Whether a file is not text at all, judged by the start of its content.

    Args:
        head: the first `SNIFF_BYTES` of the file, decompressed (fewer for a short file).

    Returns:
        `binary` (a NUL byte, as git and grep decide), `not_utf8` (a UTF-16/UTF-32
        byte order mark, or more than `NOT_UTF8_SHARE` of the bytes not UTF-8), or
        None for text.
    """
    if head.startswith(_WIDE_BOMS):
        return "not_utf8"
    if b"\x00" in head:
        return "binary"
    if head.isascii():
        return None
    # A character cut by the end of the block is held back, not counted as damage.
    decoder = codecs.getincrementaldecoder("utf-8")("ignore")
    decoded = decoder.decode(head, final=len(head) < SNIFF_BYTES)
    judged = len(head) - len(decoder.getstate()[0])
    undecodable = judged - len(decoded.encode("utf-8"))
    return "not_utf8" if undecodable > NOT_UTF8_SHARE * judged else None


def parse_json_record(line: str, text_field: str, domain_field: str | None,
                      changes: list[str]):
    """One JSONL line -> `((text, domain, meta), None)` or `(None, reason)`.

    Args:
        line: the decoded line.
        text_field: `data.text_field`.
        domain_field: `data.domain_field`.
        changes: `non_finite_removed` and `domain_invalid` are appended here.

    Returns:
        `domain` is the field's string, or another scalar's JSON text; "" when absent,
        null, an object, a list or not finite (the last three counted as
        `domain_invalid`). `meta` keeps the
        other scalar fields (for slicing) except non-finite numbers, which strict JSON
        cannot hold.
    """
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None, "malformed_json"
    if not isinstance(record, dict):
        return None, "not_an_object"
    return _record_fields(record, text_field, domain_field, changes)


def _record_fields(record: dict, text_field: str, domain_field: str | None,
                   changes: list[str]):
    """`((text, domain, meta), None)` or `(None, reason)` of one decoded record: the rules
    `parse_json_record` documents, shared by JSONL lines and table rows."""
    if text_field not in record:
        return None, "missing_text_field"
    text = record[text_field]
    if not isinstance(text, str):
        return None, "text_not_string"
    domain = _domain(record.get(domain_field) if domain_field else None, changes)
    meta = {}
    for key, value in record.items():
        if key in (text_field, domain_field) or not isinstance(value, _SCALARS):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            _note(changes, "non_finite_removed")
        else:
            meta[key] = value
    return (text, domain, meta), None


def parse_row(row: dict, data, changes: list[str]):
    """One row of a table -> `((text, domain, meta), None)` or `(None, reason)`, by the
    rules of `parse_json_record`: a row is a record whose fields are its columns.

    A value given as bytes (a text column's, or a bytes feature's) is decoded as a JSONL
    line is: in a named field (text, domain, label, target) under `data.invalid_utf8`,
    which may drop the row; elsewhere bytes that are not UTF-8 are not text and are left
    out of `meta`, as other non-scalar values (lists, timestamps) are.

    Args:
        row: column -> value.
        data: the `DataConfig`.
        changes: `invalid_utf8_replaced`, `non_finite_removed` and `domain_invalid` are
            appended here.
    """
    named = (data.text_field, data.domain_field, data.label_field, data.target_field)
    values = {}
    for key, value in row.items():
        if isinstance(value, bytes):
            if key not in named:
                value = _utf8_or_none(value)
            else:
                value, reason = decode(value, data.invalid_utf8, bom=False)
                if value is None:
                    return None, reason
                if reason:
                    _note(changes, reason)
        values[key] = value
    return _record_fields(values, data.text_field, data.domain_field, changes)


def _utf8_or_none(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _domain(value, changes: list[str]) -> str:
    """A domain field's value as a slice name ("" for none): a string as it is, another
    scalar as its JSON text (`7`, `true`, `1.5`, as `labels.label_of` names labels)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, bool)) or (isinstance(value, float) and math.isfinite(value)):
        return json.dumps(value)
    _note(changes, "domain_invalid")
    return ""


def repair_surrogates(record: tuple[str, str, dict], invalid_utf8: str, changes: list[str]):
    """Apply the invalid-UTF-8 policy to lone surrogates of a parsed record.

    JSON can escape a lone UTF-16 surrogate (`"\\ud800"`), which no UTF-8 text holds:
    such a record is invalid UTF-8 like one with undecodable bytes.

    Args:
        record: `(text, domain, meta)` from `parse_json_record`.
        invalid_utf8: `drop` or `replace` (`data.invalid_utf8`).
        changes: `invalid_utf8_replaced` is appended here when something was replaced.

    Returns:
        `(record, None)` with every lone surrogate (in text, domain, meta keys and
        values) replaced by U+FFFD, or `(None, "invalid_utf8")`.
    """
    text, domain, meta = record
    strings = [text, domain, *meta, *(v for v in meta.values() if isinstance(v, str))]
    if not any(_SURROGATE.search(s) for s in strings):
        return record, None
    if invalid_utf8 == "drop":
        return None, "invalid_utf8"
    _note(changes, "invalid_utf8_replaced")
    return (_replace_surrogates(text), _replace_surrogates(domain),
            {_replace_surrogates(k): _replace_surrogates(v) for k, v in meta.items()}), None


def _replace_surrogates(value):
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def _note(changes: list[str], change: str) -> None:
    """Record a change once per record."""
    if change not in changes:
        changes.append(change)


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


def encode_document(document: dict) -> str:
    """The document's line in a documents shard (stable key order, UTF-8 kept).

    Raises:
        ValueError: a non-finite number (cleaning leaves none: strict JSON has no NaN).
    """
    return json.dumps(document, ensure_ascii=False, sort_keys=True, allow_nan=False)
