"""Paths whose names hold a matcher's wildcard characters (`run[1]`, `a*b`, `a?b`): a file
listing is of that directory alone, and a model's digest is over its own files, never over
nothing (SHA-256 of zero bytes would make every model there "the same")."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from pipeline.core import files
from pipeline.core.contracts import serving_dir
from pipeline.core.errors import UsageError

# A directory name, and a sibling that the name read as a pattern would match instead.
NAMES = [("run[1]", "run1"), ("a*b", "aXXb"), ("a?b", "aYb")]


def _model(directory, weights: bytes):
    """A directory shaped like a SavedModel (the digest reads bytes, not TensorFlow)."""
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"graph")
    (directory / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    return directory


@pytest.mark.parametrize("name, sibling", NAMES)
def test_files_under_a_wildcard_name_are_its_own_only(tmp_path, name, sibling):
    _model(tmp_path / name / "model", b"mine")
    _model(tmp_path / sibling / "model", b"a neighbour's")
    found = [meta.path for meta in files.files_under(str(tmp_path / name / "model"))]
    assert found == [str(tmp_path / name / "model" / "saved_model.pb"),
                     str(tmp_path / name / "model" / "variables" /
                         "variables.data-00000-of-00001")]


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None], ids=["empty", "missing"])
def test_files_under_nothing_is_refused_naming_the_directory(tmp_path, make):
    directory = tmp_path / "run[1]" / "model"
    directory.parent.mkdir()
    make(directory)
    with pytest.raises(UsageError) as info:
        files.files_under(str(directory))
    assert str(info.value) == f"{directory}: no files below it (a missing or empty directory)"


# Needs `serving_dir._files` to list through `files.files_under` (see the report of issue 21).
@pytest.mark.parametrize("name, sibling", NAMES)
def test_two_models_under_a_wildcard_path_have_different_digests(tmp_path, name, sibling):
    first = _model(tmp_path / name / "first", b"weights one")
    second = _model(tmp_path / name / "second", b"weights two")
    _model(tmp_path / sibling / "first", b"a neighbour's weights")
    plain = tmp_path / "plain"
    shutil.copytree(first, plain)
    digests = [serving_dir.saved_model_digest(str(p)) for p in (first, second, plain)]
    assert digests[0] != digests[1]
    assert digests[0] == digests[2]  # the same files, wherever they are
    assert hashlib.sha256().hexdigest() not in digests


def test_the_digest_of_an_empty_directory_is_refused(tmp_path):
    empty = tmp_path / "run[1]" / "model"
    empty.mkdir(parents=True)
    with pytest.raises(UsageError, match=r"no files below it"):
        serving_dir.saved_model_digest(str(empty))


# Needs `examples.shard_pattern` to escape its directory (see the report of issue 21).
@pytest.mark.parametrize("name, sibling", NAMES)
def test_the_shard_pattern_of_examples_under_a_wildcard_path_matches_its_shards(tmp_path, name,
                                                                               sibling):
    from apache_beam.io.filesystems import FileSystems

    from pipeline.core.contracts.examples import shard_pattern

    for directory in (tmp_path / name / "examples", tmp_path / sibling / "examples"):
        directory.mkdir(parents=True)
        (directory / "eval-00000-of-00001.tfrecord").write_bytes(b"")
    pattern = shard_pattern(str(tmp_path / name / "examples"), "eval")
    found = [meta.path for meta in FileSystems.match([pattern])[0].metadata_list]
    assert found == [str(tmp_path / name / "examples" / "eval-00000-of-00001.tfrecord")]
