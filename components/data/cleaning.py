"""Turning raw records into documents: parsing, Unicode normalization, the split.

Pure functions, so each rule is tested without a runner. A raw record is the bytes of one
line (or one whole file, `data.txt_mode: file`) and the format of the file it came from.
Every record yields either a document or the name of the reason it was dropped.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata

# Every drop reason, so stats list them all (with zeros) and readers can rely on the keys.
DROP_REASONS = ("empty", "invalid_utf8", "malformed_json", "not_an_object", "missing_text_field",
                "text_not_string")
_SCALARS = (str, int, float, bool)


def parse_record(raw: bytes, fmt: str, data) -> tuple[dict | None, str | None]:
    """Parse one raw record into a document.

    Args:
        raw: the record's bytes (a line without its line break, or a whole file).
        fmt: `txt` or `jsonl`.
        data: the `DataConfig` (text/domain fields, normalization).

    Returns:
        `(document, None)` with document `{"text", "domain", "meta"}`, or `(None, reason)`
        with a reason from `DROP_REASONS`.
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    line = line.removeprefix("\ufeff")
    if fmt == "txt":
        return _document(line, "", {}, data.normalization)
    if not line.strip():
        return None, "empty"
    try:
        record = json.loads(line)
    except ValueError:
        return None, "malformed_json"
    if not isinstance(record, dict):
        return None, "not_an_object"
    if data.text_field not in record:
        return None, "missing_text_field"
    text = record[data.text_field]
    if not isinstance(text, str):
        return None, "text_not_string"
    domain = record.get(data.domain_field) if data.domain_field else None
    meta = {k: v for k, v in record.items()
            if k not in (data.text_field, data.domain_field) and isinstance(v, _SCALARS)}
    return _document(text, "" if domain is None else str(domain), meta, data.normalization)


def _document(text: str, domain: str, meta: dict, normalization: str):
    text = unicodedata.normalize(normalization, text)
    if not text.strip():
        return None, "empty"
    domain = unicodedata.normalize(normalization, domain)
    return {"text": text, "domain": domain, "meta": meta}, None


def document_id(text: str) -> str:
    """The content hash that identifies a document (its sort key and, later, dedup key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_split(text: str, salt: str, eval_fraction: float) -> str:
    """`eval` or `train`, from a salted hash of the text alone.

    The split depends on nothing but the text, the salt and the fraction, so a document
    keeps its split when the corpus grows, and duplicates land in the same split.

    Args:
        text: the normalized document text.
        salt: `data.split_salt`.
        eval_fraction: `data.eval_fraction`.

    Returns:
        The split's name.
    """
    digest = hashlib.sha256(f"{salt}\x00{text}".encode("utf-8")).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction else "train"


def encode_document(document: dict) -> str:
    """The document's line in a documents shard (stable key order, UTF-8 kept)."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True)
