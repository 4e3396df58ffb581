"""The tests' own reader of the examples artifact, with tf.data and nothing of the trainer's:
what transform writes is checked against `pipeline/core/contracts/examples.py` by a second
reader, not by the code that trains on it (`feature_spec.json` is read by the contract's
one reader).

    dataset = read_examples(examples_dir, "train")   # dicts of the contract's features
"""

from __future__ import annotations

import os

import tensorflow as tf

from pipeline.core.contracts.examples import read_feature_spec

_DTYPES = {"int64": tf.int64, "string": tf.string}


def feature_description(spec: dict) -> dict:
    """Feature name -> `tf.io.FixedLenFeature`, for `tf.io.parse_example` on batches."""
    return {name: tf.io.FixedLenFeature(feature["shape"], _DTYPES[feature["dtype"]])
            for name, feature in spec["features"].items()}


def example_files(examples_dir: str, spec: dict, split: str) -> list[str]:
    """The shard paths of `split`, in shard order."""
    return [os.path.join(examples_dir, name) for name in spec["splits"][split]["shards"]]


def read_examples(examples_dir: str, split: str) -> tf.data.Dataset:
    """A dataset of parsed examples, in file order (shuffle on top for training).

    Args:
        examples_dir: the examples artifact directory.
        split: `train` or `eval`.

    Returns:
        `tf.data.Dataset` of dicts: token_ids int64 [L], segment_ids int64 [L],
        num_bytes int64 [1], domain string [1].
    """
    spec = read_feature_spec(examples_dir)
    description = feature_description(spec)
    files = example_files(examples_dir, spec, split)
    return (tf.data.TFRecordDataset(files, compression_type="GZIP" if spec["gzip"] else "")
            .map(lambda record: tf.io.parse_single_example(record, description),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
