"""KerasHub presets (`save_to_preset` directories) of GPT-2, Llama and BERT, proven equal to
keras-hub's own models and tokenizers; a backbone-only BERT preset, and broken presets.

Each preset is a tiny keras-hub task model (`GPT2CausalLM`, `LlamaCausalLM`,
`BertMaskedLM`) with perturbed random weights and the tokenizer files of the reference
checkpoint of the same family (tests/checkpoints/conftest.py), saved with
`save_to_preset`; lmpipe imports the directory and must compute keras-hub's logits (to
1e-4) and keras-hub's token ids on the 300 varied strings.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.checkpoints.helpers import framed_logits, imported_model, imported_tokenizer
from tests.checkpoints.test_gpt2 import refusal

FAMILIES = ["gpt2", "llama", "bert"]
SHAPE = dict(num_layers=2, hidden_dim=32, intermediate_dim=48)


def _gpt2(keras_hub, checkpoint):
    vocabulary = json.loads((checkpoint / "vocab.json").read_text(encoding="utf-8"))
    merges = (checkpoint / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary,
                                               merges=[m for m in merges if m])
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocabulary), num_heads=4,
                                             max_sequence_length=96, dropout=0.0, **SHAPE)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=64)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def _llama(keras_hub, checkpoint):
    tokenizer = keras_hub.models.LlamaTokenizer(proto=(checkpoint / "tokenizer.model").read_bytes())
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_query_heads=4, num_key_value_heads=2,
        rope_max_wavelength=50_000, layer_norm_epsilon=1e-5, **SHAPE)
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(tokenizer, sequence_length=64)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=preprocessor)


def _bert(keras_hub, checkpoint):
    vocabulary = (checkpoint / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_heads=4,
                                             max_sequence_length=96, dropout=0.0, **SHAPE)
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(tokenizer, sequence_length=64)
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=preprocessor)


BUILDERS = {"gpt2": _gpt2, "llama": _llama, "bert": _bert}


@pytest.fixture(scope="module")
def make_preset(make_reference, tmp_path_factory):
    """family -> (preset directory, the keras-hub task model, the reference): the task's
    weights perturbed away from the initializer (so that a swapped or transposed tensor
    cannot hide), saved with `save_to_preset` (made once per module)."""
    import keras
    import keras_hub

    made = {}

    def make(family):
        if family not in made:
            reference = make_reference(family)
            keras.utils.set_random_seed(3)
            model = BUILDERS[family](keras_hub, reference.directory)
            rng = np.random.default_rng(3)
            model.set_weights([w + 0.2 * rng.standard_normal(w.shape).astype(w.dtype)
                               for w in model.get_weights()])
            directory = tmp_path_factory.mktemp("preset") / f"{family}_preset"
            model.save_to_preset(str(directory))
            made[family] = directory, model, reference
        return made[family]

    return make


def keras_hub_logits(model, ids: list[int]) -> np.ndarray:
    """keras-hub's own logits of one sequence (a masked LM predicting every position)."""
    import keras_hub

    tokens = np.array([ids])
    inputs = {"token_ids": tokens, "padding_mask": np.ones_like(tokens, bool)}
    if isinstance(model, keras_hub.models.MaskedLM):
        inputs.update(segment_ids=np.zeros_like(tokens), mask_positions=np.arange(len(ids))[None])
    return np.asarray(model(inputs))[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_keras_hub_preset_imports_equal_to_keras_hub(make_preset, family):
    import tensorflow as tf

    directory, reference, checkpoint_reference = make_preset(family)
    model, checkpoint = imported_model(directory)
    assert (checkpoint.layout, checkpoint.model_type) == ("keras_hub", family)
    assert checkpoint.model["intermediate_dim"] == 48
    tokenizer = imported_tokenizer(directory)
    strings = checkpoint_reference.strings
    ids = tf.function(tokenizer.tokenize)(tf.constant(strings)).to_list()
    # keras-hub's tokenizer in a graph, as its preprocessing runs in tf.data (eagerly,
    # keras-hub 0.32 may take a Python path that splits GPT-2's whitespace runs otherwise).
    theirs = tf.function(reference.preprocessor.tokenizer)(tf.constant(strings)).to_list()
    mismatched = [s for s, a, b in zip(strings, ids, theirs) if a != b]
    assert len(strings) == 300 and mismatched == []
    special = tokenizer.info.special_tokens
    rows = [row for row in ids if 0 < len(row) <= 60][:40]
    ours = framed_logits(model, rows, special["bos"], special["eos"])
    expected = [keras_hub_logits(reference, [special["bos"]] + row + [special["eos"]])
                for row in rows]
    assert max(float(np.abs(b).max()) for b in expected) > 1.0
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours, expected)) < 1e-4


def test_a_bert_backbone_preset_starts_a_classifier_but_not_a_masked_lm(make_preset, tmp_path):
    from models.checkpoints import load_weights, read_checkpoint

    directory, reference, _ = make_preset("bert")
    bare = tmp_path / "bert_backbone"
    reference.backbone.save_to_preset(str(bare))
    reference.preprocessor.tokenizer.save_to_preset(str(bare))
    classifier, _ = imported_model(bare, task_type="classification")
    masked_lm, _ = imported_model(directory)
    ours = {w.path: np.asarray(w) for w in classifier.backbone.weights}
    theirs = {w.path: np.asarray(w) for w in masked_lm.backbone.weights}
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[path], theirs[path]) for path in ours)
    message = refusal(load_weights, masked_lm, read_checkpoint(bare))
    assert "tensor mlm_head/" in message and "is missing" in message


def test_a_bert_preset_serves_with_keras_hubs_word_splitting_inside(make_preset, tmp_path):
    """The preset's tokenizer (keras-hub's word splitting, then WordPiece: tensorflow-text
    ops) is carried inside the SavedModel, which scores in a fresh process with only
    tensorflow and tensorflow_text."""
    from models.export import save_export
    from tests.checkpoints.helpers import score_in_fresh_process

    directory, _, reference = make_preset("bert")
    model, _ = imported_model(directory)
    save_export(model, imported_tokenizer(directory), 64, str(tmp_path / "saved_model"))
    scored = score_in_fresh_process(tmp_path / "saved_model", reference.strings[:60], tmp_path)
    assert not scored["keras_hub_imported"]
    assert sum(scored["num_tokens"]) > 10 and all(np.isfinite(scored["nll"]))


def test_a_broken_preset_is_refused(make_preset, tmp_path):
    from models.checkpoints import load_weights, read_checkpoint

    source = make_preset("gpt2")[0]
    directory = tmp_path / "preset"
    shutil.copytree(source, directory)
    config = json.loads((directory / "config.json").read_text())
    model, _ = imported_model(source)
    weights = directory / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "model.weights.h5: cannot be read" in refusal(load_weights, model,
                                                         read_checkpoint(directory))
    config["class_name"] = "BloomBackbone"
    (directory / "config.json").write_text(json.dumps(config))
    assert 'class_name="BloomBackbone" is not supported' in refusal(read_checkpoint, directory)
    config.update(class_name="LlamaBackbone", config={**config["config"], "num_query_heads": 4,
                                                      "num_key_value_heads": 4,
                                                      "rope_position_scaling_factor": 8.0})
    (directory / "config.json").write_text(json.dumps(config))
    assert "rope_position_scaling_factor=8.0" in refusal(read_checkpoint, directory)
