"""The examples artifact's feature contract (what train, tune and evaluate read).

Each TFRecord holds `tf.train.Example`s with exactly these features:

    token_ids      int64  [L]  token ids, `pad_id` where empty
    segment_ids    int64  [L]  0 = padding; 1, 2, ... = which document within the window
    num_bytes      int64  [1]  UTF-8 bytes of the text covered by this window's tokens
    domain         bytes  [1]  the documents' domain ("" if none; `MIXED_DOMAIN` for a
                               train window of several domains' remainders)
    length_bucket  bytes  [1]  the length bucket (e.g. "128-511", in text tokens) of the
                               window's documents (eval) or of its first document (train)

L is `transform.sequence_length`. Every document is `[bos] + ids + [eos]`; a document may
continue from the previous window (then that segment starts without bos).
Causal-LM target: position i predicts token i+1 when
`segment_ids[i+1] == segment_ids[i] != 0`; other positions carry no loss. Attention
should stay within a segment id.

`feature_spec.json` beside the shards records the features, `sequence_length`, `pad_id`,
the compression (`none` or `gzip`), the length buckets and per split the shard names and
example counts.

The protos are encoded by `example_encoding` (the wire format of `tf.train.Example`),
which lets the transform write TFRecords without TensorFlow.
"""

from __future__ import annotations

import numpy as np

FORMAT_VERSION = 2
# One suffix whatever the compression (readers glob `<split>-*.tfrecord`); the compression
# is recorded in feature_spec.json.
TFRECORD_SUFFIX = ".tfrecord"
MIXED_DOMAIN = "(mixed)"


def features(sequence_length: int) -> dict:
    """Feature name -> {"dtype", "shape"} of the contract."""
    return {
        "token_ids": {"dtype": "int64", "shape": [sequence_length]},
        "segment_ids": {"dtype": "int64", "shape": [sequence_length]},
        "num_bytes": {"dtype": "int64", "shape": [1]},
        "domain": {"dtype": "string", "shape": [1]},
        "length_bucket": {"dtype": "string", "shape": [1]},
    }


def bucket_names(edges: tuple[int, ...] | list[int]) -> list[str]:
    """Names of the length buckets that `edges` (token counts) separate: "0-127", ..., "2048+"."""
    lows = [0, *edges]
    return [f"{low}-{high - 1}" for low, high in zip(lows, edges)] + [f"{lows[-1]}+"]


def bucket_of(num_tokens: np.ndarray, edges: tuple[int, ...] | list[int]) -> np.ndarray:
    """The bucket index of each document length (in text tokens)."""
    return np.searchsorted(np.asarray(edges), num_tokens, side="right")


def feature_spec(sequence_length: int, pad_id: int, compression: str, splits: dict,
                 length_buckets: list[int]) -> dict:
    """The content of `feature_spec.json`.

    Args:
        sequence_length: `transform.sequence_length`.
        pad_id: the tokenizer's pad id.
        compression: `none` or `gzip`.
        splits: split -> {"shards": [file names], "examples": count}.
        length_buckets: `transform.length_buckets` (edges, in text tokens).

    Returns:
        JSON-ready data.
    """
    return {"format_version": FORMAT_VERSION, "features": features(sequence_length),
            "sequence_length": sequence_length, "pad_id": pad_id, "compression": compression,
            "length_buckets": {"edges": list(length_buckets),
                               "names": bucket_names(length_buckets)},
            "mixed_domain": MIXED_DOMAIN, "splits": splits}
