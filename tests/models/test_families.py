"""What every model family (gpt, llama, bert) promises: config round trips, `.keras`
reloads with identical logits, and packed documents that do not see each other."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from tests.models.conftest import FAMILIES, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_config_mirrors_constructor(family):
    backbone = tiny_model(family, intermediate_dim=24, dropout=0.1).backbone
    cls = type(backbone)
    config = backbone.get_config()
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "dtype"}
    assert params == set(config) - {"name", "trainable"}
    assert config["intermediate_dim"] == 24 and config["dropout"] == 0.1
    assert cls.from_config(config).get_config() == config
    assert backbone.count_params() == cls.from_config(config).count_params()


@pytest.mark.parametrize("family, tie", [("gpt", True), ("llama", False), ("llama", True),
                                         ("bert", True), ("bert", False)])
def test_keras_file_reloads_with_identical_logits(tmp_path, packed_batch, family, tie):
    from models.factory import load_model

    model = tiny_model(family, seed=3, tie_embeddings=tie,
                       **({"num_kv_heads": 1} if family == "llama" else {}))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = load_model(str(path))
    assert type(reloaded) is type(model)
    assert reloaded.get_config() == model.get_config()
    expected = np.asarray(model(packed_batch))
    assert expected.shape == (2, 16, 384)
    np.testing.assert_array_equal(np.asarray(reloaded(packed_batch)), expected)


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_tied_head_reuses_the_token_embedding(family):
    untied = tiny_model(family, tie_embeddings=False)
    tied = tiny_model(family, tie_embeddings=True)
    assert untied.count_params() - tied.count_params() == 384 * 16


def test_family_default_ties_only_bert():
    assert [tiny_model(f).tie_embeddings for f in FAMILIES] == [False, False, True]


def _change_first_document(batch):
    changed = {k: v.copy() for k, v in batch.items()}
    changed["token_ids"][0, :5] = (changed["token_ids"][0, :5] + 7) % 384
    return changed


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("document_masking", [True, False])
def test_documents_do_not_see_each_other_only_with_masking(packed_batch, family,
                                                           document_masking):
    model = tiny_model(family, document_masking=document_masking)
    before = np.asarray(model(packed_batch))
    after = np.asarray(model(_change_first_document(packed_batch)))
    second_doc = slice(5, 12)
    differs = np.abs(before[0, second_doc] - after[0, second_doc]).max()
    if document_masking:
        assert differs == 0.0
    else:
        assert differs > 1e-4
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_content_does_not_change_real_positions(packed_batch, family):
    model = tiny_model(family)
    changed = {k: v.copy() for k, v in packed_batch.items()}
    changed["token_ids"][0, 12:] = 17
    before, after = np.asarray(model(packed_batch)), np.asarray(model(changed))
    np.testing.assert_array_equal(before[0, :12], after[0, :12])


@pytest.mark.parametrize("family, sees_the_future", [("gpt", False), ("llama", False),
                                                     ("bert", True)])
def test_decoders_are_causal_and_the_encoder_is_bidirectional(packed_batch, family,
                                                              sees_the_future):
    model = tiny_model(family)
    changed = {k: v.copy() for k, v in packed_batch.items()}
    changed["token_ids"][1, 10] = (changed["token_ids"][1, 10] + 11) % 384
    before, after = np.asarray(model(packed_batch)), np.asarray(model(changed))
    earlier = np.abs(before[1, :10] - after[1, :10]).max()
    if sees_the_future:
        assert earlier > 1e-6
    else:
        assert earlier == 0.0
    assert np.abs(before[1, 10:] - after[1, 10:]).max() > 1e-4


@pytest.fixture
def mixed_float16():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_precision_computes_the_float32_function(packed_batch, family, mixed_float16):
    import keras

    mixed = tiny_model(family, seed=6)
    assert mixed.compute_dtype == "float16" and mixed.variable_dtype == "float32"
    logits = np.asarray(mixed(packed_batch))
    keras.mixed_precision.set_global_policy("float32")
    exact = tiny_model(family, seed=6)
    exact.set_weights(mixed.get_weights())
    expected = np.asarray(exact(packed_batch))
    assert logits.dtype == np.float16
    np.testing.assert_allclose(logits.astype(np.float32), expected, atol=0.02)


def test_model_code_is_backend_agnostic():
    """Only the tokenizer and the exports may use TensorFlow; the rest is keras.ops."""
    import ast
    from pathlib import Path

    models = Path(__file__).resolve().parents[2] / "models"
    allowed = {"tokenizer.py", "export.py"}
    offenders = []
    for path in sorted(models.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("tensorflow", "tensorflow_text") for n in names):
                offenders.append(path.name)
    assert set(offenders) <= allowed
    assert "attention.py" in {p.name for p in models.glob("*.py")}
