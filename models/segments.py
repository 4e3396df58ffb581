"""Masks and targets derived from packed examples' segment ids (backend-agnostic Keras).

A packed window holds several documents: `segment_ids` is 1, 2, ... for the document each
position belongs to and 0 for padding. Both the attention mask and the causal LM targets
come from it, here, so the trainer, the export and the tests share one definition.
"""

from __future__ import annotations

from keras import ops


def document_attention_mask(segment_ids):
    """Which key each query may attend to: only positions of its own segment.

    Padding (segment 0) attends only to padding, so no row of the mask is empty; real
    tokens never see padding or another document. The decoder adds the causal mask.

    Args:
        segment_ids: int [B, L].

    Returns:
        bool [B, L, L]; `mask[b, i, j]` is True when query i may attend to key j.
    """
    return ops.equal(ops.expand_dims(segment_ids, 2), ops.expand_dims(segment_ids, 1))


def padding_mask(segment_ids):
    """bool [B, L]: True at real tokens (segment id != 0)."""
    return ops.not_equal(segment_ids, 0)


def causal_lm_targets(token_ids, segment_ids):
    """Next-token targets and their weights for a packed window.

    The target of position i is token i+1 iff `segment_ids[i+1] == segment_ids[i] != 0`:
    never across documents, never into or out of padding. The last position has no target.

    Args:
        token_ids: int [B, L].
        segment_ids: int [B, L].

    Returns:
        (targets int [B, L], weights float32 [B, L]); a weight is 1.0 where the target is
        real and 0.0 elsewhere (the target there is 0, a valid index).
    """
    next_ids = ops.pad(token_ids[:, 1:], [[0, 0], [0, 1]])
    next_segments = ops.pad(segment_ids[:, 1:], [[0, 0], [0, 1]])
    valid = ops.logical_and(ops.equal(next_segments, segment_ids), ops.not_equal(segment_ids, 0))
    targets = ops.where(valid, next_ids, ops.zeros_like(next_ids))
    return targets, ops.cast(valid, "float32")

