"""The label vocabulary artifact (labels): which labels a classifier has, and their ids.

A document's label is `data.label_field` of its JSONL record, which ingest keeps in the
document's `meta` (or, when it is also `data.domain_field`, as the document's domain).
Strings are taken as they are; numbers and booleans become their JSON text (`3`, `true`).
A missing, null, non-scalar or blank label makes the document unlabeled. A label's id is
its position in the vocabulary.

Artifact layout (`labels/`, written by `components/labels/`):
    vocabulary.json   {"field", "labels" (id order), "counts": {split: {label: n}},
                       "unlabeled": {split: n}, "eval_only": [labels]}
    labels.txt        one label per line; the line number is the id
"""

from __future__ import annotations

import json

from pipeline.core import files

VOCABULARY_FILE = "vocabulary.json"
LABELS_FILE = "labels.txt"


def label_of(document: dict, label_field: str, domain_field: str | None) -> str | None:
    """The label of an ingested document, or None when it has none.

    Args:
        document: a documents-artifact record {"text", "domain", "meta"}.
        label_field: `data.label_field`.
        domain_field: `data.domain_field` (ingest stores that field as `domain`).

    Returns:
        The label as text, or None.
    """
    if label_field == domain_field:
        value = document.get("domain")
    else:
        value = (document.get("meta") or {}).get(label_field)
    if value is None or isinstance(value, (dict, list)):
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text if text.strip() else None


def label_ids(labels: list[str]) -> dict[str, int]:
    """Label -> id (its position in the vocabulary)."""
    return {label: i for i, label in enumerate(labels)}


def vocabulary_path(directory: str) -> str:
    """The `vocabulary.json` of a labels artifact directory."""
    return files.join(directory, VOCABULARY_FILE)


def read_vocabulary(directory: str) -> dict:
    """The parsed `vocabulary.json` of a labels artifact (any Beam filesystem)."""
    return files.read_json(vocabulary_path(directory))


def write_labels_file(directory: str, labels: list[str]) -> None:
    """Write `labels.txt`: the labels in id order, one per line.

    Args:
        directory: the labels artifact directory.
        labels: the vocabulary's labels, none holding a line break.
    """
    files.write_bytes(files.join(directory, LABELS_FILE),
                      "".join(f"{label}\n" for label in labels).encode("utf-8"))
