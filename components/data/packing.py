"""Packing tokenized documents into windows of exactly `transform.sequence_length` tokens.

Documents (each already `[bos] + ids + [eos]`) are concatenated in a fixed order and cut
into windows; a document longer than the rest of a window continues in the next one, so
no token is lost, and only the last window of a packing group is padded. Windows never
mix domains: documents are grouped by `(domain, bucket)` first, where the bucket (a hash
of the document) keeps each group small enough for one worker.

Per window: `token_ids` (pad where empty), `segment_ids` (0 = padding, 1, 2, ... = which
document within the window, restarting at 1 in every window) and `num_bytes` (the UTF-8
bytes of the text its tokens cover).
"""

from __future__ import annotations

import hashlib
import math

import apache_beam as beam
import numpy as np

from components.data.shards import shard_index

PACK_GROUP_BYTES = 16 * 2**20


def pack(documents: list[tuple[np.ndarray, np.ndarray]], length: int, pad_id: int) -> dict:
    """Pack documents into windows.

    Args:
        documents: `(tokens, token_bytes)` per document, in packing order.
        length: the window length.
        pad_id: the pad id (from the tokenizer artifact).

    Returns:
        `{"token_ids": [W, length], "segment_ids": [W, length], "num_bytes": [W]}` int64
        arrays (W = 0 for no documents).
    """
    if not documents:
        empty = np.zeros((0, length), np.int64)
        return {"token_ids": empty, "segment_ids": empty.copy(), "num_bytes": np.zeros(0, np.int64)}
    tokens = np.concatenate([d[0] for d in documents]).astype(np.int64)
    token_bytes = np.concatenate([d[1] for d in documents]).astype(np.int64)
    ordinal = np.repeat(np.arange(len(documents)), [len(d[0]) for d in documents])
    padding = -len(tokens) % length
    tokens = np.pad(tokens, (0, padding), constant_values=pad_id).reshape(-1, length)
    token_bytes = np.pad(token_bytes, (0, padding)).reshape(-1, length)
    ordinal = np.pad(ordinal, (0, padding), constant_values=-1).reshape(-1, length)
    segments = np.where(ordinal >= 0, ordinal - ordinal[:, :1] + 1, 0)
    return {"token_ids": tokens, "segment_ids": segments, "num_bytes": token_bytes.sum(axis=1)}


def num_groups(num_bytes: int) -> int:
    """Packing groups for a domain of `num_bytes` of text."""
    return max(1, math.ceil(num_bytes / PACK_GROUP_BYTES))


def window_key(split: str, domain: str, group: int, index: int) -> str:
    """A window's sort key: a hash, so shards interleave domains rather than cluster them."""
    return hashlib.sha256(f"{split}\x00{domain}\x00{group}\x00{index}".encode("utf-8")).hexdigest()


class PackWindows(beam.PTransform):
    """Tokenized documents -> `(sort_key, window)` with window `{"token_ids",
    "segment_ids", "num_bytes", "domain"}`.

    Args:
        split: the split's name (part of the sort keys).
        length: `transform.sequence_length`.
        pad_id: the pad id.
        domain_bytes: domain -> its text bytes in this split (sets the group counts).
    """

    def __init__(self, split: str, length: int, pad_id: int, domain_bytes: dict[str, int]):
        super().__init__()
        self.split = split
        self.length = length
        self.pad_id = pad_id
        self.groups = {domain: num_groups(size) for domain, size in domain_bytes.items()}

    def expand(self, documents):
        return (documents
                | "KeyByGroup" >> beam.Map(self._group_key)
                | "Group" >> beam.GroupByKey()
                | "Pack" >> beam.FlatMap(self._pack))

    def _group_key(self, document):
        domain = document["domain"]
        return (domain, shard_index(document["id"], self.groups.get(domain, 1))), document

    def _pack(self, keyed):
        (domain, group), documents = keyed
        ordered = sorted(documents, key=lambda d: d["id"])
        windows = pack([(d["tokens"], d["token_bytes"]) for d in ordered], self.length, self.pad_id)
        for i in range(len(windows["num_bytes"])):
            yield window_key(self.split, domain, group, i), {
                "token_ids": windows["token_ids"][i], "segment_ids": windows["segment_ids"][i],
                "num_bytes": int(windows["num_bytes"][i]), "domain": domain}
