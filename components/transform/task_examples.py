"""The examples of the fine-tuning tasks: one document per window, never packed.

Every example has the packed-LM contract's features (`examples.py`) with one segment:

    token_ids      int64  [L]  token ids, `pad_id` after the sequence
    segment_ids    int64  [L]  1 on the sequence's tokens, 0 on padding
    num_bytes      int64  [1]  UTF-8 bytes of the text its tokens cover
    domain         bytes  [1]  the document's domain ("" if none)
    length_bucket  bytes  [1]  the length bucket of the whole sequence, in tokens

plus, per task:

    classification  label        int64 [1]  the label's id in the vocabulary
                    the sequence is `[bos] + text[:L-2] + [eos]` (a longer text is cut)
    text_to_text    target_start int64 [1]  the position of the target's first token
                    input_text   bytes [1]  the input the tokens hold (cut as they are)
                    target_text  bytes [1]  the target the tokens hold (the reference)
                    the sequence is `[bos] + input[:B] + separator + target[:T] + [eos]`
                    with T = `task.max_target_tokens` and B = L - 2 - len(separator) - T,
                    so a serving prompt is cut exactly as in training

`feature_spec.json` records the features, and in `task` what a reader needs: the
batch features the trainer feeds the objective, the label vocabulary, the separator's
ids and the budgets.

Encoding uses the wire format helpers of `example_encoding` (no TensorFlow).
"""

from __future__ import annotations

import numpy as np

from components.transform import encoding as example_encoding



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


def encode_example(int_features: dict, bytes_features: dict) -> bytes:
    """A serialized `tf.train.Example`.

    Args:
        int_features: name -> int array (any shape, flattened; values >= 0).
        bytes_features: name -> one string.

    Returns:
        The proto's bytes (features in name order, so equal inputs give equal bytes).
    """
    entries = []
    for name in sorted({*int_features, *bytes_features}):
        if name in bytes_features:
            entries.append(example_encoding.bytes_entry(name, bytes_features[name]))
            continue
        values = np.asarray(int_features[name], np.int64).reshape(-1)
        data, _ = example_encoding.varint_bytes(values)
        packed = data.tobytes()
        entries.append(example_encoding.int64_header(name, len(packed)) + packed)
    body = b"".join(entries)
    return b"\x0a" + example_encoding.varint(len(body)) + body
