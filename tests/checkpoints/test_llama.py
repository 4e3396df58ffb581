"""Llama checkpoints: what lmpipe's backbone cannot reproduce is refused by key and value,
and so is a tokenizer that does not fit. Equality with the reference: `test_equality.py`."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.checkpoints.test_gpt2 import edit_config, refusal


@pytest.fixture(scope="module")
def llama(make_reference):
    return make_reference("llama")


@pytest.fixture
def checkpoint_copy(llama, tmp_path):
    target = tmp_path / "checkpoint"
    shutil.copytree(llama.directory, target)
    return target


def test_the_config_fixes_the_model_section(llama):
    from models.checkpoints import read_checkpoint, resolve_model_config
    from pipeline.core.config import ModelConfig

    checkpoint = read_checkpoint(str(llama.directory))
    resolved = resolve_model_config(ModelConfig(family="llama", num_kv_heads=2), checkpoint)
    assert (resolved.family, resolved.num_kv_heads, resolved.rope_max_wavelength,
            resolved.tie_embeddings, resolved.intermediate_dim) == ("llama", 2, 50_000.0, False, 48)
    assert checkpoint.backbone == {"layer_norm_epsilon": 1e-5}
    message = refusal(resolve_model_config, ModelConfig(family="gpt", hidden_dim=64), checkpoint)
    assert "model.hidden_dim is 64 but the checkpoint" in message and "has 32" in message


@pytest.mark.parametrize("changes, named", [
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}},
     'rope_type="llama3"'),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling="),
    ({"attention_bias": True}, "attention_bias=true"),
    ({"mlp_bias": True}, "mlp_bias=true"),
    ({"hidden_act": "gelu"}, 'hidden_act="gelu"'),
    ({"head_dim": 16}, "head_dim=16"),
    ({"num_key_value_heads": 3}, "num_key_value_heads=3"),
])
def test_settings_the_backbone_cannot_express_are_refused(checkpoint_copy, changes, named):
    from models.checkpoints import read_checkpoint

    edit_config(checkpoint_copy, **changes)
    message = refusal(read_checkpoint, checkpoint_copy)
    assert named in message and "config.json" in message


def test_a_tokenizer_that_does_not_fit_is_refused(checkpoint_copy):
    from models.checkpoints import read_checkpoint, tokenizer_of

    edit_config(checkpoint_copy, vocab_size=384)  # fewer rows than the tokenizer's ids
    message = refusal(tokenizer_of, read_checkpoint(checkpoint_copy))
    assert "tokenizer.model: the tokenizer has 400 ids, config.json's vocab_size is 384" in message
    (checkpoint_copy / "tokenizer.model").write_bytes(b"\x0a\x03abc")
    message = refusal(tokenizer_of, read_checkpoint(checkpoint_copy))
    assert "tokenizer.model: not a SentencePiece model" in message
    (checkpoint_copy / "tokenizer.model").unlink()
    assert "no tokenizer.model" in refusal(tokenizer_of, read_checkpoint(checkpoint_copy))


def test_an_untied_checkpoint_without_its_head_is_refused(llama, checkpoint_copy):
    from models.checkpoints import load_weights, read_checkpoint
    from tests.checkpoints.helpers import imported_model, read_safetensors, write_safetensors

    model, _ = imported_model(llama.directory)
    tensors = read_safetensors(checkpoint_copy / "model.safetensors")
    del tensors["lm_head.weight"]
    write_safetensors(checkpoint_copy / "model.safetensors", tensors)
    assert "tensor lm_head.weight is missing" in refusal(load_weights, model,
                                                        read_checkpoint(checkpoint_copy))
    assert json.loads((checkpoint_copy / "config.json").read_text())["tie_word_embeddings"] is False
