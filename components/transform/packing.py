"""Packing tokenized documents into windows of exactly `transform.sequence_length` tokens.

Documents (each already `[bos] + ids + [eos]`) of one packing group are concatenated in
a fixed order and cut into windows; a document longer than the rest of a window
continues in the next one (without a new bos), so no token is lost.

A group is fed in chunks (`GroupPacker.add`): each call emits the full windows and keeps
the remainder (less than one window) for the next call. What remains at the end is
either padded into one last window (`pad`) or, for training, handed on to be packed with
other groups' remainders (`renumber` then `pad`): see `transform_beam` for the policy.

Per window: `token_ids` (pad where empty), `segment_ids` (0 = padding, 1, 2, ... = which
document within the window, restarting at 1 in every window), `num_bytes` (the UTF-8
bytes of the text its tokens cover) and `bucket` (the length bucket of the document its
first token belongs to).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tokens:
    """A stream of tokens with, per token, its text bytes, document and length bucket.

    Attributes:
        ids: int64 token ids.
        nbytes: int64 UTF-8 bytes of text each token covers.
        doc: int64 document ordinal, non-decreasing; a change starts a new segment.
        bucket: int64 length bucket of the token's document.
    """

    ids: np.ndarray
    nbytes: np.ndarray
    doc: np.ndarray
    bucket: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, start: int, stop: int | None = None) -> "Tokens":
        part = slice(start, stop)
        return Tokens(self.ids[part], self.nbytes[part], self.doc[part], self.bucket[part])


def empty_tokens() -> Tokens:
    """A stream without tokens."""
    nothing = np.zeros(0, np.int64)
    return Tokens(nothing, nothing, nothing, nothing)


def concat(parts: list[Tokens]) -> Tokens:
    """One stream of the parts, in order."""
    if not parts:
        return empty_tokens()
    if len(parts) == 1:
        return parts[0]
    return Tokens(*(np.concatenate([getattr(p, name) for p in parts])
                    for name in ("ids", "nbytes", "doc", "bucket")))


def documents_stream(documents: list[tuple[np.ndarray, np.ndarray]], first_doc: int,
                     buckets: np.ndarray) -> Tokens:
    """The stream of documents given as `(tokens, token_bytes)`, numbered from `first_doc`."""
    lengths = [len(tokens) for tokens, _ in documents]
    doc = np.repeat(np.arange(first_doc, first_doc + len(documents), dtype=np.int64), lengths)
    return Tokens(np.concatenate([t for t, _ in documents]).astype(np.int64),
                  np.concatenate([b for _, b in documents]).astype(np.int64), doc,
                  np.repeat(np.asarray(buckets, np.int64), lengths))


def windows_of(stream: Tokens, length: int, pad_id: int) -> dict:
    """Cut a stream into windows, padding the last one.

    Args:
        stream: the tokens, in packing order.
        length: the window length.
        pad_id: the pad id (from the tokenizer artifact).

    Returns:
        `{"token_ids": [W, length], "segment_ids": [W, length], "num_bytes": [W],
        "bucket": [W]}` int64 arrays (W = 0 for an empty stream).
    """
    padding = -len(stream) % length
    ids = np.pad(stream.ids, (0, padding), constant_values=pad_id).reshape(-1, length)
    nbytes = np.pad(stream.nbytes, (0, padding)).reshape(-1, length)
    doc = stream.doc.reshape(-1)
    doc = np.pad(doc, (0, padding), mode="edge" if len(doc) else "constant").reshape(-1, length)
    starts = np.ones((len(ids), 1), np.int64)
    segments = np.concatenate([starts, 1 + np.cumsum(np.diff(doc, axis=1) != 0, axis=1)], axis=1)
    if padding:
        segments[-1, length - padding:] = 0
    return {"token_ids": ids, "segment_ids": segments, "num_bytes": nbytes.sum(axis=1),
            "bucket": stream.bucket[::length].copy()}


def pack(documents: list[tuple[np.ndarray, np.ndarray]], length: int, pad_id: int) -> dict:
    """Pack whole documents `(tokens, token_bytes)` into windows (the last one padded).

    Args:
        documents: per document its tokens and per-token bytes, in packing order.
        length: the window length.
        pad_id: the pad id.

    Returns:
        Windows as in `windows_of` (all in length bucket 0).
    """
    if not documents:
        return windows_of(empty_tokens(), length, pad_id)
    return windows_of(documents_stream(documents, 0, np.zeros(len(documents))), length, pad_id)


class GroupPacker:
    """Streams documents of several packing groups into full windows, group by group.

    Args:
        length: the window length.
        pad_id: the pad id.
    """

    def __init__(self, length: int, pad_id: int):
        self.length = length
        self.pad_id = pad_id
        self.rests: dict = {}

    def add(self, key, stream: Tokens) -> dict:
        """Append `stream` to group `key`; return the group's newly completed windows."""
        whole = concat([self.rests.get(key, empty_tokens()), stream])
        full = len(whole) - len(whole) % self.length
        self.rests[key] = whole.slice(full)
        return windows_of(whole.slice(0, full), self.length, self.pad_id)

    def remainders(self) -> dict:
        """Group key -> its tokens not yet in a window (each shorter than one window)."""
        return {key: rest for key, rest in sorted(self.rests.items()) if len(rest)}


def renumber(parts: list[Tokens]) -> Tokens:
    """Concatenate streams from different groups so that no two share a document number."""
    renumbered, offset = [], 0
    for part in parts:
        if not len(part):
            continue
        doc = part.doc - part.doc[0] + offset
        renumbered.append(Tokens(part.ids, part.nbytes, doc, part.bucket))
        offset = int(doc[-1]) + 1
    return concat(renumbered)
