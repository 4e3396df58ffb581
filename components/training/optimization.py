"""Optimizer and learning-rate schedule from `train.*`."""

from __future__ import annotations

import keras

# Weight decay is for matrices that mix features; norms, biases and embeddings are left alone
# (matched on the variable's own name: attention biases are 2-D, so rank alone cannot tell).
_NO_DECAY_NAMES = ["^bias$", "^gamma$", "^beta$", "^embeddings$"]


def make_schedule(train_config) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from 0 over `train.warmup_steps`, then cosine decay to
    `learning_rate * min_learning_rate_ratio` at `train.steps`.

    Args:
        train_config: `pipeline.config.TrainConfig`.

    Returns:
        A schedule of the optimizer step (0-based).
    """
    peak = train_config.learning_rate
    warmup = train_config.warmup_steps
    decay_steps = train_config.steps - warmup
    alpha = train_config.min_learning_rate_ratio
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps, alpha=alpha,
                                                  warmup_target=peak, warmup_steps=warmup)


def make_optimizer(train_config, model: keras.Model) -> keras.optimizers.Optimizer:
    """The optimizer for `model` (create it under the strategy's scope).

    Gradient clipping is not set here: the training step clips the all-reduced gradient
    by its global norm, which Keras' per-replica clipping would not.

    Args:
        train_config: `pipeline.config.TrainConfig`.
        model: the model whose variables it will update.

    Returns:
        A built Keras optimizer.
    """
    if train_config.optimizer != "adamw":
        raise ValueError(f"train.optimizer {train_config.optimizer!r} is not implemented")
    optimizer = keras.optimizers.AdamW(learning_rate=make_schedule(train_config),
                                       weight_decay=train_config.weight_decay,
                                       beta_1=0.9, beta_2=0.95, epsilon=1e-8)
    no_decay = [v for v in model.trainable_variables if len(v.shape) < 2]
    optimizer.exclude_from_weight_decay(var_list=no_decay, var_names=_NO_DECAY_NAMES)
    optimizer.build(model.trainable_variables)
    return optimizer
