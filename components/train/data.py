"""tf.data input pipelines over the transform component's packed TFRecords.

Examples artifact layout: `train-*.tfrecord` and `eval-*.tfrecord` shards of
`tf.train.Example` (`token_ids` int64 [L], `segment_ids` int64 [L], `num_bytes` int64 [1],
`domain` bytes [1]) and `feature_spec.json` (`sequence_length`, `gzip`).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from pipeline.core.contracts import examples


@dataclass(frozen=True)
class FeatureSpec:
    """What the trainer needs from `feature_spec.json`.

    Attributes:
        sequence_length: L, the fixed length of every example.
        gzip: whether the shards are gzipped.
        task: the `task` entry of a fine-tuning task's examples (`task_examples.py`:
            type, batch features, labels, separator), None for packed LM examples.
        replay_files: with data spans and `data.spans.replay`, the train shards of the
            spans before the ones trained on (the `replay` split).
        replay: the share of their windows trained on again.
        spans: the data spans of the train split, () when the examples are not a view of
            spans.
    """

    sequence_length: int
    gzip: bool
    task: dict | None = None
    replay_files: tuple[str, ...] = ()
    replay: float = 0.0
    spans: tuple[int, ...] = ()

    @property
    def batch_features(self) -> tuple[str, ...]:
        """One-value int features a batch carries beside the tokens (a task's label...)."""
        return tuple((self.task or {}).get("batch_features", ()))


def read_feature_spec(directory: str) -> FeatureSpec:
    """Read and check `feature_spec.json` of an examples artifact.

    Args:
        directory: the examples artifact directory.

    Returns:
        The spec.
    """
    raw = examples.read_feature_spec(directory)
    replay = raw.get("splits", {}).get("replay")
    return FeatureSpec(sequence_length=int(raw["sequence_length"]),
                       gzip=raw["gzip"], task=raw.get("task"),
                       replay_files=tuple(split_files(directory, "replay")) if replay else (),
                       replay=replay["fraction"] if replay else 0.0,
                       spans=tuple(raw.get("spans", ())))


def split_files(directory: str, split: str) -> list[str]:
    """The sorted shard files of `split` (`train` or `eval`); may be empty."""
    return sorted(tf.io.gfile.glob(examples.shard_pattern(directory, split)))


def parse_batch(serialized: tf.Tensor, sequence_length: int, extra: tuple[str, ...] = ()) -> dict:
    """Serialized examples [B] -> {token_ids, segment_ids} int32 [B, L], and each one-value
    int feature named in `extra` as int32 [B]."""
    features = {name: tf.io.FixedLenFeature([sequence_length], tf.int64)
                for name in ("token_ids", "segment_ids")}
    features.update({name: tf.io.FixedLenFeature([], tf.int64) for name in extra})
    parsed = tf.io.parse_example(serialized, features)
    return {name: tf.cast(value, tf.int32) for name, value in parsed.items()}


def train_dataset(files: list[str], spec: FeatureSpec, batch_size: int, seed: int,
                  shuffle_buffer: int) -> tf.data.Dataset:
    """Endless, shuffled, fixed-size global batches for training.

    Files are read in order and shuffled with a fixed seed, so the same seed gives the
    same batches. The examples of data spans are read interleaved, one window from each
    shard in turn, so that the shuffle buffer holds windows of every span, the newest
    included: a span's shards hold that span alone, and read one span after the other
    the newest would come last, after a short retrain's steps (a whole corpus's shards are
    each a sample of all of it, by the content hash, and are read in order). With
    `spec.replay`, the older spans' shards join the interleave, each keeping that share
    of its windows. Its iterator is checkpointable (`tf.train.Checkpoint(iterator=...)`),
    shuffle buffer included, which is how a resumed run continues where it stopped.

    Args:
        files: the train shards.
        spec: the examples' feature spec.
        batch_size: the global batch size.
        seed: the shuffle seed.
        shuffle_buffer: examples in the shuffle buffer.

    Returns:
        A dataset of {token_ids, segment_ids} int32 [batch_size, L].
    """
    records = _interleaved(files, spec)
    dataset = (records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
               .repeat()
               .batch(batch_size, drop_remainder=True)
               .map(lambda batch: parse_batch(batch, spec.sequence_length, spec.batch_features),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .prefetch(tf.data.AUTOTUNE))
    return dataset.with_options(_options())


def eval_dataset(files: list[str], spec: FeatureSpec, batch_size: int,
                 num_batches: int) -> tf.data.Dataset:
    """The first `num_batches` batches of the eval split, in file order.

    A short last batch is padded to `batch_size` with empty rows (segment id 0, so no
    targets), so every batch splits evenly over the replicas.
    """
    records = _records(files, spec)
    dataset = (records.batch(batch_size)
               .take(num_batches)
               .map(lambda batch: _pad_rows(parse_batch(batch, spec.sequence_length,
                                                        spec.batch_features), batch_size))
               .prefetch(tf.data.AUTOTUNE))
    return dataset.with_options(_options())


# A replayed window is kept when the hash of its bytes falls below this share of buckets.
REPLAY_BUCKETS = 1 << 30


def _interleaved(files: list[str], spec: FeatureSpec) -> tf.data.Dataset:
    """The serialized windows of `files` and the replayed shards: one from each in turn
    for the examples of data spans, else file after file. The replayed windows kept are
    the `spec.replay` share chosen by a hash of each serialized window: the same windows
    in every run and on every worker."""
    paths = list(files) + list(spec.replay_files)
    replayed = [False] * len(files) + [True] * len(spec.replay_files)
    keep = int(spec.replay * REPLAY_BUCKETS)
    compression = "GZIP" if spec.gzip else ""

    def read(path, is_replayed):
        return tf.data.TFRecordDataset(path, compression_type=compression).filter(
            lambda record: tf.logical_or(
                tf.logical_not(is_replayed),
                tf.strings.to_hash_bucket_fast(record, REPLAY_BUCKETS) < keep))

    cycle = max(1, len(paths)) if spec.spans else 1  # sequential either way: a fixed order
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(replayed, tf.bool))).interleave(
        read, cycle_length=cycle, block_length=1)


def _records(files: list[str], spec: FeatureSpec) -> tf.data.Dataset:
    """The serialized examples of `files`, in order."""
    return tf.data.TFRecordDataset(files, compression_type="GZIP" if spec.gzip else "")


def _pad_rows(batch: dict, batch_size: int) -> dict:
    missing = batch_size - tf.shape(batch["token_ids"])[0]
    # A task's one-value features pad with -1 (no label), which carries no loss either.
    return {name: tf.pad(value, [[0, missing]] + [[0, 0]] * (value.shape.rank - 1),
                         constant_values=0 if value.shape.rank > 1 else -1)
            for name, value in batch.items()}


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # Every worker reads the same global batches and keeps its replicas' rows (see
    # `loop.Trainer`), so the pipeline is identical everywhere and one checkpoint of the
    # iterator serves every worker: no auto-sharding.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options
