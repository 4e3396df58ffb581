"""The examples artifact's feature contract (what train, tune and evaluate read).

Each TFRecord holds `tf.train.Example`s with exactly these features:

    token_ids    int64  [L]  token ids, `pad_id` where empty
    segment_ids  int64  [L]  0 = padding; 1, 2, ... = which document within the window
    num_bytes    int64  [1]  UTF-8 bytes of the text covered by this window's tokens
    domain       bytes  [1]  the documents' domain ("" if none)

L is `transform.sequence_length`. Every document is `[bos] + ids + [eos]`; a document may
continue from the previous window (then it starts without bos at position 0).
Causal-LM target: position i predicts token i+1 when
`segment_ids[i+1] == segment_ids[i] != 0`; other positions carry no loss. Attention
should stay within a segment id.

`feature_spec.json` beside the shards records the features, `sequence_length`, `pad_id`,
the compression (`none` or `gzip`) and per split the shard names and example counts.
"""

from __future__ import annotations

FORMAT_VERSION = 1
# One suffix whatever the compression (readers glob `<split>-*.tfrecord`); the compression
# is recorded in feature_spec.json.
TFRECORD_SUFFIX = ".tfrecord"


def features(sequence_length: int) -> dict:
    """Feature name -> {"dtype", "shape"} of the contract."""
    return {
        "token_ids": {"dtype": "int64", "shape": [sequence_length]},
        "segment_ids": {"dtype": "int64", "shape": [sequence_length]},
        "num_bytes": {"dtype": "int64", "shape": [1]},
        "domain": {"dtype": "string", "shape": [1]},
    }


def serialize_window(window: dict) -> bytes:
    """A packed window as a serialized `tf.train.Example`.

    Args:
        window: `{"token_ids", "segment_ids", "num_bytes", "domain"}`.

    Returns:
        The serialized proto.
    """
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    feature = {
        "token_ids": ints(window["token_ids"].tolist()),
        "segment_ids": ints(window["segment_ids"].tolist()),
        "num_bytes": ints([window["num_bytes"]]),
        "domain": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[window["domain"].encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def feature_spec(sequence_length: int, pad_id: int, compression: str, splits: dict) -> dict:
    """The content of `feature_spec.json`.

    Args:
        sequence_length: `transform.sequence_length`.
        pad_id: the tokenizer's pad id.
        compression: `none` or `gzip`.
        splits: split -> {"shards": [file names], "examples": count}.

    Returns:
        JSON-ready data.
    """
    return {"format_version": FORMAT_VERSION, "features": features(sequence_length),
            "sequence_length": sequence_length, "pad_id": pad_id, "compression": compression,
            "splits": splits}
