"""Building a tiny model, optimizer and trainer the way the training session does."""

from __future__ import annotations

from pipeline.core.config import ModelConfig, TaskConfig, TrainConfig

TINY_MODEL = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=64)


def make_trainer(strategy, train_config: TrainConfig, model_config: ModelConfig = TINY_MODEL,
                 vocabulary_size: int = 384):
    """A seeded model + optimizer built under `strategy` (and `train.precision`), wrapped in
    a `Trainer`."""
    import keras

    from components.train.loop import Trainer
    from components.train.optimization import make_optimizer
    from components.train.precision import dtype_policy
    from models.factory import build_model
    from models.objectives import objective_for

    keras.utils.set_random_seed(train_config.seed)
    with dtype_policy(train_config.precision), strategy.scope():
        model = build_model(model_config, TaskConfig(), vocabulary_size)
        optimizer = make_optimizer(train_config, model, train_config.steps)
    return Trainer(model, optimizer, strategy, objective_for(model_config), train_config.seed,
                   train_config.clip_norm, train_config.grad_accum_steps,
                   train_config.jit_compile, train_config.precision == "mixed_float16")


def repeat(batch: dict):
    """An endless dataset of one fixed global batch."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensors(batch).repeat()


def weights(trainer) -> list:
    """The trainer's model weights as NumPy arrays."""
    import numpy as np

    return [np.asarray(v.value) for v in trainer.model.trainable_variables]
