"""`train.jit_compile`: true, false, or `auto` (XLA from a model size; `flops.xla_decision`)."""

from __future__ import annotations

import pytest


def _model(hidden_dim: int, vocabulary_size: int):
    import keras

    from models.factory import build_model
    from pipeline.core.config import ModelConfig, TaskConfig

    keras.utils.set_random_seed(0)
    return build_model(ModelConfig(num_layers=1, hidden_dim=hidden_dim, num_heads=2,
                                   max_sequence_length=16), TaskConfig(), vocabulary_size)


def test_auto_compiles_from_the_threshold_on_and_says_why():
    from components.train.flops import XLA_MIN_FLOPS_PER_TOKEN, xla_decision

    toy = xla_decision("auto", _model(16, 384))
    assert toy["setting"] == "auto" and toy["compiled"] is False
    assert f"< {XLA_MIN_FLOPS_PER_TOKEN:.0e}" in toy["reason"]
    # 6 x (a 64 x 4096 head alone: 262,144 weights) is above 1e6 FLOPs per token.
    assert xla_decision("auto", _model(64, 4096))["compiled"] is True


def test_an_explicit_setting_is_obeyed_whatever_the_size():
    from components.train.flops import xla_decision

    model = _model(16, 384)
    assert xla_decision(True, model) == {"setting": True, "compiled": True,
                                         "reason": "train.jit_compile"}
    assert xla_decision(False, model)["compiled"] is False


def test_the_trainer_compiles_what_was_decided():
    import tensorflow as tf

    from components.train.loop import Trainer
    from models.objectives import CausalLMObjective

    model = _model(16, 384)
    trainer = Trainer(model, None, tf.distribute.get_strategy(), CausalLMObjective(), 0, 1.0,
                      jit_compile="auto")
    assert trainer.xla["compiled"] is False
    assert trainer._grads._jit_compile is False


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_only_true_false_or_auto_is_a_setting(value):
    from pipeline.core.config import TrainConfig
    from pipeline.core.configio import build
    from pipeline.core.errors import ConfigError

    assert build(TrainConfig, {"jit_compile": "auto"}, "train").jit_compile == "auto"
    with pytest.raises(ConfigError, match="train.jit_compile"):
        build(TrainConfig, {"jit_compile": value}, "train")
