"""The input pipeline reads the transform component's examples exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core.errors import UsageError
from tests.models import lm_data


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    lm_data.write_tokenizer(root / "tokenizer")
    plain = lm_data.write_examples(root / "plain", root / "tokenizer")
    gzip = lm_data.write_examples(root / "gzip", root / "tokenizer", gzip=True, shards=3)
    return root, plain, gzip


def _rows(records):
    return sorted((tuple(r["token_ids"]), tuple(r["segment_ids"])) for r in records)


def _train_rows(directory, seed, count, batch_size=8):
    from components.train import data

    spec = data.read_feature_spec(str(directory))
    dataset = data.train_dataset(data.split_files(str(directory), "train"), spec, batch_size,
                                 seed=seed, shuffle_buffer=1000)
    rows = []
    for batch in dataset.take(-(-count // batch_size)):
        assert batch["token_ids"].dtype.name == "int32"
        rows += list(zip(map(tuple, batch["token_ids"].numpy()),
                         map(tuple, batch["segment_ids"].numpy())))
    return rows[:count]


@pytest.mark.parametrize("name", ["plain", "gzip"])
def test_first_epoch_of_train_batches_is_a_permutation_of_the_train_split(artifacts, name):
    root, plain, gzip = artifacts
    records = {"plain": plain, "gzip": gzip}[name]["train"]
    rows = _train_rows(root / name, seed=0, count=len(records))
    assert sorted(rows) == _rows(records)
    assert rows == _train_rows(root / name, seed=0, count=len(records))
    assert rows != _train_rows(root / name, seed=1, count=len(records))


def test_eval_batches_are_the_first_examples_in_file_order(artifacts):
    from components.train import data

    root, plain, _ = artifacts
    directory = str(root / "plain")
    spec = data.read_feature_spec(directory)
    batches = list(data.eval_dataset(data.split_files(directory, "eval"), spec, 5, 3))
    assert [len(b["token_ids"]) for b in batches] == [5, 5, 5]
    in_file_order = plain["eval"][0::2] + plain["eval"][1::2]
    got = np.concatenate([b["token_ids"].numpy() for b in batches])
    np.testing.assert_array_equal(got, np.stack([r["token_ids"] for r in in_file_order[:15]]))


def test_feature_spec_problems_are_usage_errors(tmp_path):
    from components.train import data

    with pytest.raises(UsageError, match="feature_spec.json: missing"):
        data.read_feature_spec(str(tmp_path))
    (tmp_path / "feature_spec.json").write_text(json.dumps(
        {"sequence_length": 8, "gzip": "zstd"}))
    with pytest.raises(UsageError, match="feature_spec.json: gzip must be true or false, "
                                         "got 'zstd'"):
        data.read_feature_spec(str(tmp_path))


def test_examples_of_the_older_format_are_refused_not_misread(tmp_path):
    """Format 2 named its gzip `compression`: read as format 3, gzipped shards would be
    taken for plain ones, so the older spec is refused with what to do."""
    from components.train import data

    (tmp_path / "feature_spec.json").write_text(json.dumps(
        {"format_version": 2, "sequence_length": 8, "compression": "gzip"}))
    with pytest.raises(UsageError, match=r"feature_spec.json: examples of format 2, this "
                                         r"lmpipe reads format 3 \(rerun transform\)"):
        data.read_feature_spec(str(tmp_path))
