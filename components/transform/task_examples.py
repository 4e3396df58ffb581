"""How a fine-tuning task frames one document into its example: one document per window,
never packed, one segment (the features are the examples contract's,
`pipeline/core/contracts/examples.py`; `tasks.py` writes them with
`components/shared/example_wire.py`).

    classification  `[bos] + text[:L-2] + [eos]` (a longer text is cut)
    text_to_text    `[bos] + input[:B] + separator + target[:T] + [eos]` with
                    T = `task.max_target_tokens` and B = L - 2 - len(separator) - T, so a
                    serving prompt is cut exactly as in training; `target_start` is the
                    position of the target's first token, `input_text` and `target_text`
                    the texts the kept tokens cover

L is `transform.sequence_length`; `pad_id` follows the sequence, where `segment_ids` is 0.
"""

from __future__ import annotations

import numpy as np


def classification_sequence(ids: np.ndarray, text_bytes: np.ndarray, length: int, bos: int,
                            eos: int, pad: int) -> dict:
    """One document framed for classification.

    Args:
        ids: the text's token ids.
        text_bytes: the UTF-8 bytes each id covers.
        length: L, `transform.sequence_length`.
        bos, eos, pad: the tokenizer's special ids.

    Returns:
        {"token_ids" [L], "segment_ids" [L], "num_bytes", "truncated", "tokens"
        (the sequence's length before cutting, bos and eos included)}.
    """
    keep = length - 2
    body = np.asarray(ids, np.int64)[:keep]
    sequence = np.concatenate([[bos], body, [eos]]).astype(np.int64)
    return {**_padded(sequence, length, pad),
            "num_bytes": int(np.asarray(text_bytes, np.int64)[:keep].sum()),
            "truncated": len(ids) > keep, "tokens": len(ids) + 2}


def input_budget(length: int, separator_ids: np.ndarray, max_target_tokens: int) -> int:
    """B: how many input tokens a text-to-text sequence keeps (see the module docstring)."""
    return length - 2 - len(separator_ids) - max_target_tokens


def text_to_text_sequence(input_ids: np.ndarray, target_ids: np.ndarray,
                          separator_ids: np.ndarray, length: int, max_target_tokens: int,
                          bos: int, eos: int, pad: int) -> dict:
    """One input/target pair framed for text to text.

    Args:
        input_ids: the input's token ids.
        target_ids: the target's token ids.
        separator_ids: the separator's token ids.
        length: L, `transform.sequence_length`.
        max_target_tokens: T, `task.max_target_tokens`.
        bos, eos, pad: the tokenizer's special ids.

    Returns:
        {"token_ids" [L], "segment_ids" [L], "target_start", "input_kept",
        "target_kept" (how many of each one's tokens are in the sequence), "tokens"
        (the uncut sequence's length)}.
    """
    budget = input_budget(length, separator_ids, max_target_tokens)
    kept_input = np.asarray(input_ids, np.int64)[:budget]
    kept_target = np.asarray(target_ids, np.int64)[:max_target_tokens]
    prompt = np.concatenate([[bos], kept_input, separator_ids]).astype(np.int64)
    sequence = np.concatenate([prompt, kept_target, [eos]]).astype(np.int64)
    return {**_padded(sequence, length, pad), "target_start": len(prompt),
            "input_kept": len(kept_input), "target_kept": len(kept_target),
            "tokens": len(input_ids) + len(target_ids) + len(separator_ids) + 2}


def _padded(sequence: np.ndarray, length: int, pad: int) -> dict:
    tokens = np.full(length, pad, np.int64)
    tokens[:len(sequence)] = sequence
    segments = np.zeros(length, np.int64)
    segments[:len(sequence)] = 1
    return {"token_ids": tokens, "segment_ids": segments}


def covered_text(text: str, token_bytes: np.ndarray, kept: int) -> str:
    """The beginning of `text` that its first `kept` tokens cover."""
    size = int(np.asarray(token_bytes, np.int64)[:kept].sum())
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")
