"""The label vocabulary of a classification task: which labels exist (the analyze rules).

What a document's label is, the ids and the artifact layout are the contract's
(`pipeline/core/contracts/labels.py`). The vocabulary is built from the train split only
(TF Transform's analyze phase): a label seen only in eval has no id, so the model cannot
predict it; the transform counts such examples (and unlabeled ones) and leaves them out.
Ids follow the sorted label names, so they do not move when counts change.
"""

from __future__ import annotations

from pipeline.core.contracts.labels import label_of


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
