"""Building a tiny model, optimizer and trainer the way `run_fn` does."""

from __future__ import annotations

from pipeline.config import ModelConfig, TaskConfig, TrainConfig

TINY_MODEL = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=64)


def make_trainer(strategy, train_config: TrainConfig, model_config: ModelConfig = TINY_MODEL,
                 vocabulary_size: int = 384):
    """A seeded model + optimizer built under `strategy`, wrapped in a `Trainer`."""
    import keras

    from components.training.loop import Trainer
    from components.training.optimization import make_optimizer
    from models.factory import build_model
    from models.objectives import objective_for

    keras.utils.set_random_seed(train_config.seed)
    with strategy.scope():
        model = build_model(model_config, TaskConfig(), vocabulary_size)
        optimizer = make_optimizer(train_config, model)
    return Trainer(model, optimizer, strategy, objective_for(model_config), train_config.seed,
                   train_config.clip_norm, train_config.jit_compile)


def repeat(batch: dict):
    """An endless dataset of one fixed global batch."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensors(batch).repeat()
