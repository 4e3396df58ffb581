"""BERT's masked-LM corruption of packed windows (backend-agnostic: `keras.ops` only).

Of the real tokens (segment id != 0, not a special token) each is chosen with probability
`mask_rate`; a chosen token becomes the mask token with probability `mask_token_rate`, a
random ordinary token with probability `random_token_rate`, and stays itself otherwise.
The loss is on the chosen positions only.

The random numbers are a counter-based hash, not a stateful generator: every draw is a
function of (seed, the window's tokens, the position). So a resumed run corrupts a batch
exactly as the interrupted run did, replicas of a distributed step draw independently
(their windows differ), and the export scores a text the same whatever batch it arrives
in. The hash is Chris Wellons' `lowbias32`, in wrapping uint32 arithmetic, which every
Keras backend has.
"""

from __future__ import annotations

import numpy as np
from keras import ops

MASK_RATE = 0.15
MASK_TOKEN_RATE = 0.8
RANDOM_TOKEN_RATE = 0.1

_GOLDEN = np.uint32(0x9E3779B9)


def _mix(x):
    """lowbias32: a uint32 -> uint32 hash whose output bits each depend on every input bit."""
    x = ops.bitwise_xor(x, ops.right_shift(x, 16))
    x = ops.multiply(x, np.uint32(0x7FEB352D))
    x = ops.bitwise_xor(x, ops.right_shift(x, 15))
    x = ops.multiply(x, np.uint32(0x846CA68B))
    return ops.bitwise_xor(x, ops.right_shift(x, 16))


def _unit(bits):
    """uint32 -> float32 in [0, 1) from the top 24 bits (exact in float32)."""
    return ops.cast(ops.right_shift(bits, 8), "float32") * (1.0 / (1 << 24))


def uniform_streams(token_ids, seed, count: int) -> list:
    """`count` independent uniform [0, 1) arrays shaped like `token_ids`.

    Args:
        token_ids: int [B, L].
        seed: int [2] (an int32 pair such as the trainer's per-step seed).
        count: how many arrays.

    Returns:
        A list of `count` float32 [B, L] arrays; entry [b, i] depends only on the seed,
        row b's tokens and i.
    """
    tokens = ops.cast(token_ids, "uint32")
    positions = ops.cast(ops.cumsum(ops.ones_like(token_ids), axis=1), "uint32")
    position_keys = _mix(ops.multiply(positions, _GOLDEN))
    # An order-sensitive digest of the row: the sum of hashed (position, token) pairs.
    row_keys = ops.sum(_mix(ops.bitwise_xor(ops.multiply(tokens, _GOLDEN), position_keys)),
                       axis=1, keepdims=True)
    seed = ops.cast(seed, "uint32")
    seed_key = _mix(ops.bitwise_xor(_mix(seed[0]), seed[1]))
    bits = ops.add(ops.bitwise_xor(row_keys, seed_key), position_keys)
    streams = []
    for _ in range(count):
        bits = _mix(ops.add(bits, _GOLDEN))
        streams.append(_unit(bits))
    return streams


def mask_tokens(token_ids, segment_ids, seed, mask_id: int, special_ids, replacement_ids,
                mask_rate: float = MASK_RATE, mask_token_rate: float = MASK_TOKEN_RATE,
                random_token_rate: float = RANDOM_TOKEN_RATE):
    """Choose and corrupt tokens as BERT does.

    Args:
        token_ids: int [B, L].
        segment_ids: int [B, L]; 0 is padding.
        seed: int [2].
        mask_id: the tokenizer's mask token.
        special_ids: int [S], ids never chosen (padding, document markers, the mask...).
        replacement_ids: int [R], the ids a random replacement is drawn from.
        mask_rate: probability that a real token is chosen.
        mask_token_rate: probability that a chosen token becomes `mask_id`.
        random_token_rate: probability that it becomes a random replacement id.

    Returns:
        (corrupted token ids int32 [B, L], targets int32 [B, L] (the original token where
        chosen, 0 elsewhere), weights float32 [B, L] (1.0 where chosen)).
    """
    token_ids = ops.cast(token_ids, "int32")
    choose, action, pick = uniform_streams(token_ids, seed, 3)
    special = ops.any(ops.equal(ops.expand_dims(token_ids, -1), special_ids), axis=-1)
    candidate = ops.logical_and(ops.not_equal(segment_ids, 0), ops.logical_not(special))
    chosen = ops.logical_and(candidate, ops.less(choose, mask_rate))
    to_mask = ops.logical_and(chosen, ops.less(action, mask_token_rate))
    to_random = ops.logical_and(
        ops.logical_and(chosen, ops.logical_not(to_mask)),
        ops.less(action, mask_token_rate + random_token_rate))
    count = ops.shape(replacement_ids)[0]
    index = ops.minimum(ops.cast(pick * count, "int32"), count - 1)
    random_ids = ops.take(replacement_ids, index)
    corrupted = ops.where(to_mask, mask_id, ops.where(to_random, random_ids, token_ids))
    targets = ops.where(chosen, token_ids, ops.zeros_like(token_ids))
    return corrupted, targets, ops.cast(chosen, "float32")
