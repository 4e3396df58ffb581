"""`train.warm_start`: resolution into a cache-key input, loading, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core.config import ModelConfig, TrainConfig
from pipeline.core.errors import ConfigError, UsageError
from tests.components.test_train import MODEL, _run_train
from tests.models import lm_data


def _publish(serving, model_dir, number):
    """Put a model artifact's SavedModel into a serving dir the way push does (with a card
    that carries the train summary)."""
    from pipeline.core.contracts import serving_dir

    summary = json.loads((model_dir / "train_summary.json").read_text())
    card = {"version": number, "training": summary,
            "model": {"uri": str(model_dir),
                      "saved_model_sha256": serving_dir.saved_model_digest(
                          str(model_dir / "saved_model"))}}
    return serving_dir.publish(str(model_dir / "saved_model"), str(serving), number, card)


def test_latest_pushed_resolves_to_the_newest_version_or_to_nothing(tmp_path):
    from pipeline.core.contracts.model import resolve

    none = resolve("latest_pushed", str(tmp_path / "serving"), "key-a")
    assert none.uri == "" and none.properties["base_key"] == "key-a"
    other = resolve("latest_pushed", str(tmp_path / "serving"), "key-b")
    assert none.fingerprint == other.fingerprint
    for number, base in ((1, "old"), (2, "other")):
        version = tmp_path / "serving" / str(number)
        version.mkdir(parents=True)
        (version / "saved_model.pb").write_bytes(b"model %d" % number)
        (version / "model_card.json").write_text(json.dumps({
            "model": {"saved_model_sha256": f"digest{number}"},
            "training": {"warm_start": {"base_key": base, "artifact": none.to_json()}}}))
    latest = resolve("latest_pushed", str(tmp_path / "serving"), "key-a")
    assert latest.uri == str(tmp_path / "serving" / "2")
    assert latest.properties["version"] == 2 and latest.properties["model_sha256"] == "digest2"
    assert latest.fingerprint != none.fingerprint
    # Version 2 was trained by this very execution (same base key): resolve to what it
    # started from, so the cache key is the one it had and a rerun is cached.
    own = resolve("latest_pushed", str(tmp_path / "serving"), "other")
    assert own == none
    assert resolve(None, str(tmp_path), "k") is None


def test_a_path_resolves_with_a_fingerprint_of_its_files(tmp_path):
    from pipeline.core.contracts.model import resolve

    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    first = resolve(str(model), "serving", "key")
    assert first.uri == str(model) and first.properties["requested"] == str(model)
    assert resolve(str(model), "serving", "key").fingerprint == first.fingerprint
    model.write_bytes(b"new weights")
    assert resolve(str(model), "serving", "key").fingerprint != first.fingerprint
    with pytest.raises(ConfigError, match="config key 'train.warm_start': no model at "):
        resolve(str(tmp_path / "missing"), "serving", "key")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained model artifact, and the same model as serving version 1."""
    root = tmp_path_factory.mktemp("warm")
    lm_data.write_tokenizer(root / "tokenizer")
    lm_data.write_examples(root / "examples", root / "tokenizer")
    _run_train(root, root / "model")
    _publish(root / "serving", root / "model", 1)
    return root


def _keras_weights(path):
    from models.factory import load_model

    return [np.asarray(w) for w in load_model(str(path)).get_weights()]


# One plain SGD step at a negligible rate: the result is the starting point.
STILL = TrainConfig(steps=1, batch_size=8, optimizer="sgd", learning_rate=1e-12,
                    clip_norm=None, log_every=1, eval_batches=4)


@pytest.mark.parametrize("where", ["serving_version", "keras_file"])
def test_warm_start_loads_the_weights_and_records_where_from(source, tmp_path, where):
    from pipeline.core.contracts.model import resolve

    path = {"serving_version": source / "serving" / "1",
            "keras_file": source / "model" / "model.keras"}[where]
    warm = resolve(str(path), "unused", "base")
    out = tmp_path / "model"
    properties = _run_train(source, out, train=STILL, warm_start=warm)
    for a, b in zip(_keras_weights(source / "model" / "model.keras"),
                    _keras_weights(out / "model.keras")):
        np.testing.assert_allclose(a, b, atol=1e-9)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["warm_start"]["source"] == str(path) == properties["model"]["warm_start"]
    assert summary["warm_start"]["loaded"] == {"serving_version": "saved_model",
                                               "keras_file": "keras"}[where]
    assert summary["warm_start"]["artifact"] == warm.to_json()
    original = json.loads((source / "model" / "train_summary.json").read_text())
    assert summary["eval_loss"] == pytest.approx(original["eval_loss"], rel=1e-6)


def test_a_model_of_another_shape_is_refused(source, tmp_path):
    from pipeline.core.contracts.model import resolve

    wider = ModelConfig(num_layers=1, hidden_dim=32, num_heads=2, max_sequence_length=64)
    deeper = ModelConfig(num_layers=2, hidden_dim=16, num_heads=2, max_sequence_length=64)
    with pytest.raises(UsageError, match=r"weights do not fit this model \(Received incompatible "
                                         r"tensor with shape \(16, 64\)"):
        _run_train(source, tmp_path / "a", model=wider, train=STILL,
                   warm_start=resolve(str(source / "serving" / "1"), "unused", "base"))
    with pytest.raises(UsageError, match=r"transformer_layer_1/\S+ \(16, 2, 8\) is not in it"):
        _run_train(source, tmp_path / "b", model=deeper, train=STILL,
                   warm_start=resolve(str(source / "model" / "model.keras"), "unused", "base"))
    assert MODEL.hidden_dim == 16


def test_a_model_of_another_tokenizer_is_refused(source, tmp_path):
    from pipeline.core.contracts.model import resolve

    lm_data.write_tokenizer(tmp_path / "tokenizer", vocab_size=383)
    lm_data.write_examples(tmp_path / "examples", tmp_path / "tokenizer")
    with pytest.raises(UsageError, match=r"trained with another tokenizer \(sha256 [0-9a-f]{12}, "
                                         r"this run's is [0-9a-f]{12}\)"):
        _run_train(tmp_path, tmp_path / "model", train=STILL,
                   warm_start=resolve(str(source / "model"), "unused", "base"))
    bare = tmp_path / "bare.keras"
    bare.write_bytes((source / "model" / "model.keras").read_bytes())
    with pytest.raises(UsageError, match="cannot tell which tokenizer it was trained with"):
        _run_train(source, tmp_path / "model2", train=STILL,
                   warm_start=resolve(str(bare), "unused", "base"))


def test_a_saved_model_with_more_weights_than_this_model_is_refused(source, tmp_path):
    from pipeline.core.contracts.model import resolve

    # A student that ties its output projection to the embedding has every variable the
    # source has but its lm_head: the restore finds all of ours, and would have dropped
    # the head it does not have without a word (as a shallower student drops layers).
    tied = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=64,
                       tie_embeddings=True)
    with pytest.raises(UsageError, match=r"serving/1: its weights do not fit this model \(it "
                                         r"has 1 weights more\); model sections must match"):
        _run_train(source, tmp_path / "tied", model=tied, train=STILL,
                   warm_start=resolve(str(source / "serving" / "1"), "unused", "base"))


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_saved_model_is_a_usage_error_naming_it(source, tmp_path, damage):
    import shutil

    from pipeline.core.contracts.model import resolve

    copy = tmp_path / "version"
    shutil.copytree(source / "serving" / "1", copy)
    data = copy / "variables" / "variables.data-00000-of-00001"
    if damage == "truncated":
        with open(data, "r+b") as f:
            f.truncate(100)
    else:
        (copy / "variables" / "variables.index").write_bytes(b"\x00" * 64)
    reason = {"truncated": r"Read less bytes than requested", "garbled": r"not an sstable"}
    with pytest.raises(UsageError, match=rf"^train.warm_start {copy}: cannot read its weights "
                                         rf"\({reason[damage]}.*\)$"):
        _run_train(source, tmp_path / "out", train=STILL,
                   warm_start=resolve(str(copy), "unused", "base"))


def test_latest_pushed_with_nothing_pushed_says_it_starts_fresh(source, tmp_path, capfd):
    from pipeline.core.contracts.model import resolve

    warm = resolve("latest_pushed", str(tmp_path / "empty-serving"), "base")
    _run_train(source, tmp_path / "out", train=STILL, warm_start=warm)
    err = capfd.readouterr().err
    assert ("[train] train.warm_start latest_pushed: nothing has been pushed yet, so training "
            "starts from fresh weights") in err
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["warm_start"]["source"] is None and summary["warm_start"]["loaded"] is None


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_classifier_from_a_damaged_language_model_is_a_usage_error(source, tmp_path, damage):
    import shutil

    from components.train.tasks import task_for
    from pipeline.core.contracts.tokenizer import tokenizer_digest
    from models.factory import build_model
    from pipeline.core.config import TaskConfig

    copy = tmp_path / "version"
    shutil.copytree(source / "serving" / "1", copy)
    if damage == "truncated":
        with open(copy / "variables" / "variables.data-00000-of-00001", "r+b") as f:
            f.truncate(100)
    else:
        (copy / "variables" / "variables.index").write_bytes(b"\x00" * 64)
    reason = {"truncated": r"Read less bytes than requested", "garbled": r"not an sstable"}
    task = TaskConfig(type="classification")
    vocabulary = json.loads((source / "tokenizer" / "tokenizer.json").read_text())["vocab_size"]
    classifier = build_model(MODEL, task, vocabulary, num_classes=3)
    with pytest.raises(UsageError, match=rf"^train.warm_start {copy}: cannot read its weights "
                                         rf"\({reason[damage]}.*\)$"):
        task_for(task).load_warm_start(classifier, str(copy),
                                       tokenizer_digest(str(source / "tokenizer")))
