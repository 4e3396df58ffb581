"""The label vocabulary of a classification task: which labels exist, and their ids.

A document's label is `data.label_field` of its JSONL record, which ingest keeps in the
document's `meta` (or, when it is also `data.domain_field`, as the document's domain).
Strings are taken as they are; numbers and booleans become their JSON text (`3`, `true`).
A missing, null, non-scalar or blank label makes the document unlabeled.

The vocabulary is built from the train split only (TF Transform's analyze phase): a label
seen only in eval has no id, so the model cannot predict it; the transform counts such
examples (and unlabeled ones) and leaves them out. Ids follow the sorted label names, so
they do not move when counts change.

Artifact layout (`labels/`):
    vocabulary.json   {"field", "labels" (id order), "counts": {split: {label: n}},
                       "unlabeled": {split: n}, "eval_only": [labels]}
    labels.txt        one label per line; the line number is the id
"""

from __future__ import annotations

import json

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


def split_counts(documents, split: str, label_field: str,
                 domain_field: str | None) -> dict:
    """Count dict of documents (any iterable): `(split, "label", name)` and
    `(split, "unlabeled")`."""
    total: dict = {}
    for document in documents:
        label = label_of(document, label_field, domain_field)
        key = (split, "unlabeled") if label is None else (split, "label", label)
        total[key] = total.get(key, 0) + 1
    return total


def build_vocabulary(total: dict, label_field: str) -> dict:
    """The content of `vocabulary.json` from summed counts.

    Args:
        total: counts keyed as in `split_counts`, over both splits.
        label_field: `data.label_field`.

    Returns:
        JSON-ready data; `labels` are the train labels, sorted by name.
    """
    counts = {split: {} for split in ("train", "eval")}
    for key, value in total.items():
        if key[1] == "label":
            counts[key[0]][key[2]] = value
    labels = sorted(counts["train"])
    return {"field": label_field, "labels": labels,
            "counts": {split: dict(sorted(c.items())) for split, c in counts.items()},
            "unlabeled": {split: total.get((split, "unlabeled"), 0) for split in counts},
            "eval_only": sorted(set(counts["eval"]) - set(labels))}


def label_ids(labels: list[str]) -> dict[str, int]:
    """Label -> id (its position in the vocabulary)."""
    return {label: i for i, label in enumerate(labels)}


def read_vocabulary(directory: str) -> dict:
    """The parsed `vocabulary.json` of a labels artifact (any Beam filesystem)."""
    from pipeline.core import files

    return files.read_json(files.join(directory, VOCABULARY_FILE))
