"""The tokenizer's training sample: a deterministic sample of the train split's documents.

The sample is chosen by a seeded hash of each document's text, in one streaming pass, so
a large corpus needs memory only for the sample (`tokenizer.sample_bytes`).
"""

from __future__ import annotations

import hashlib
import json

# Over-sample by this factor in the streaming pass so the seeded cut rarely runs short.
_SAMPLE_SLACK = 1.25


def sample_key(seed: int, text: str) -> float:
    """A uniform number in [0, 1) from the seed and the text."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def read_texts(paths: list[str]):
    """Yield the `text` of every document in documents shards (any Beam filesystem)."""
    from components.shared.shards import read_jsonl_gz_lines

    for path in paths:
        for line in read_jsonl_gz_lines(path):
            yield json.loads(line)["text"]


def sample_texts(texts, total_bytes: int, sample_bytes: int, seed: int) -> list[str]:
    """A deterministic sample of up to `sample_bytes` UTF-8 bytes of documents.

    Documents are ranked by `sample_key(seed, text)` and taken in that order while they
    fit; only those likely to be taken are held in memory.

    Args:
        texts: iterable of document texts (the whole train split).
        total_bytes: their total UTF-8 size (from the documents stats).
        sample_bytes: `tokenizer.sample_bytes`.
        seed: `tokenizer.seed`.

    Returns:
        The sampled texts, in rank order.
    """
    keep = min(1.0, _SAMPLE_SLACK * sample_bytes / max(total_bytes, 1))
    ranked = sorted((key, text) for text in texts if (key := sample_key(seed, text)) < keep)
    sample, used = [], 0
    for _, text in ranked:
        size = len(text.encode("utf-8"))
        if used + size <= sample_bytes:
            sample.append(text)
            used += size
    return sample
