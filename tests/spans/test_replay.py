"""`data.spans.replay`: the trainer reads a fixed share of the older spans' windows beside
the chosen spans' (`components/train/data.py`), and the config refuses span settings that
cannot apply, in one line."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.config import LmpipeConfig
from pipeline.core.configio import apply_overrides, build
from pipeline.core.contracts import examples
from pipeline.core.errors import UsageError
from tests.models.lm_data import to_example

LENGTH = 8


def _write(directory, name: str, first: int, count: int) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(directory / name)) as writer:
        for i in range(first, first + count):  # token 0 of window i is i: windows tell apart
            record = {"token_ids": [i] + [1] * (LENGTH - 1), "segment_ids": [1] * LENGTH}
            writer.write(to_example(record).SerializeToString())


def _examples(directory, replay: float) -> None:
    _write(directory, "train-s00003-00000-of-00001.tfrecord", 0, 50)
    _write(directory, "replay-s00001-00000-of-00001.tfrecord", 1000, 200)
    _write(directory, "replay-s00002-00000-of-00001.tfrecord", 2000, 200)
    splits = {"train": {"shards": ["train-s00003-00000-of-00001.tfrecord"], "examples": 50},
              "eval": {"shards": [], "examples": 0},
              "replay": {"shards": ["replay-s00001-00000-of-00001.tfrecord",
                                    "replay-s00002-00000-of-00001.tfrecord"],
                         "examples": 400, "fraction": replay}}
    examples.write_feature_spec(str(directory), {
        **examples.feature_spec(LENGTH, 0, False, splits, [4]), "spans": [3]})


def _first_tokens(directory, replay: float, total: int) -> set[int]:
    from components.train import data

    _examples(directory, replay)
    spec = data.read_feature_spec(str(directory))
    files = data.split_files(str(directory), "train")
    batch = next(iter(data.train_dataset(files, spec, total, seed=1, shuffle_buffer=total)))
    return set(np.asarray(batch["token_ids"])[:, 0].tolist())


@pytest.mark.parametrize("replay", [0.25, 1.0])
def test_train_reads_the_chosen_spans_and_a_fixed_share_of_the_older_ones(tmp_path, replay):
    from components.train import data

    _examples(tmp_path, replay)
    spec = data.read_feature_spec(str(tmp_path))
    assert len(spec.replay_files) == 2 and spec.replay == replay
    kept = [int(np.frombuffer(r.numpy(), np.uint8).sum()) for r in data._interleaved([], spec)]
    again = [int(np.frombuffer(r.numpy(), np.uint8).sum()) for r in data._interleaved([], spec)]
    assert kept == again  # the same windows every time
    assert (len(kept) == 400) if replay == 1.0 else (60 <= len(kept) <= 140)
    # train's first pass holds every chosen window and exactly the replayed ones
    tokens = _first_tokens(tmp_path, replay, 50 + len(kept))
    assert set(range(50)) <= tokens
    assert len(tokens - set(range(50))) == len(kept)
    assert all(t >= 1000 for t in tokens - set(range(50)))


def test_without_a_replay_split_train_reads_the_train_shards_only(tmp_path):
    from components.train import data

    _write(tmp_path, "train-00000-of-00001.tfrecord", 0, 10)
    examples.write_feature_spec(str(tmp_path), examples.feature_spec(
        LENGTH, 0, False, {"train": {"shards": ["train-00000-of-00001.tfrecord"],
                                     "examples": 10}}, [4]))
    spec = data.read_feature_spec(str(tmp_path))
    assert spec.replay_files == () and spec.replay == 0.0


@pytest.mark.parametrize("overrides, message", [
    (["data.spans.latest=3"], "config key 'data.spans': chooses data spans, but no data.inputs "
                              "pattern holds {SPAN}"),
    (["data.inputs=['d/{SPAN}', 'more/*.jsonl']"], "either every pattern holds {SPAN} or none"),
    (["data.inputs=['d/{SPAN}']", "data.spans.latest=2", "data.spans.first=1"],
     "config key 'data.spans.latest': is a rolling range"),
    (["data.inputs=['d/{SPAN}']", "data.spans.first=5", "data.spans.last=2"],
     "must be <= data.spans.last (2), got 5"),
    (["data.inputs=['d/{SPAN}']", "data.spans.replay=1.5"], "must be in [0, 1], got 1.5"),
    (["data.inputs=['d/v{VERSION}']"], "{VERSION} needs {SPAN} in the same pattern"),
    (["data.inputs=['d/{SPAN}']", "task.type=classification", "data.label_field=label"],
     "data spans ({SPAN}) are read for language models (task.type lm) only"),
    (["evaluation.golden_inputs=['g.jsonl']", "task.type=classification",
      "data.label_field=label"], "a golden eval set is measured for language models"),
])
def test_span_and_golden_settings_that_cannot_apply_are_one_line(overrides, message):
    with pytest.raises(UsageError) as caught:
        build(LmpipeConfig, apply_overrides({"data": {"inputs": ["d/*.jsonl"]}}, overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_shards_of_spans_are_read_one_window_from_each_in_turn(tmp_path):
    """A short retrain sees the newest span too: its shards do not wait behind the others'."""
    from components.train import data

    _examples(tmp_path, 1.0)
    spec = data.read_feature_spec(str(tmp_path))
    files = data.split_files(str(tmp_path), "train")
    first = [data.parse_batch(r[None], LENGTH)["token_ids"][0, 0].numpy()
             for r in data._interleaved(files, spec).take(3)]
    assert [int(t) // 1000 for t in first] == [0, 1, 2]  # train, replay span 1, replay span 2
    assert sum(1 for _ in data._interleaved(files, spec)) == 450  # all of them, once
