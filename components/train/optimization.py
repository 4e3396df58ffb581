"""The optimizer named by `train.optimizer`, with its schedule, weight decay and loss scaling."""

from __future__ import annotations

import keras

from components.train.schedules import make_schedule

# Weight decay is for matrices that mix features; norms, biases and embeddings are left alone
# (matched on the variable's own name: attention biases are 2-D, so rank alone cannot tell).
_NO_DECAY_NAMES = ["^bias$", "^gamma$", "^beta$", "^scale$", "^embeddings$"]

# train.optimizer -> the default of train.weight_decay (None in config).
_DEFAULT_WEIGHT_DECAY = {"adamw": 0.01, "lion": 0.01}
# train.optimizer -> the default of train.beta_2 (None in config).
_DEFAULT_BETA_2 = {"adam": 0.95, "adamw": 0.95, "lion": 0.99}


class _PreReducedGradients:
    """Mixed into a Keras optimizer: its gradients arrive already summed over replicas.

    The training step all-reduces the gradients itself, once, because clipping needs the
    global norm of the all-reduced gradient; Keras' TensorFlow optimizer would sum them
    over the replicas a second time (twice the traffic, and a replica-count scaling).
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return grads_and_vars


def resolved_weight_decay(train_config) -> float:
    """`train.weight_decay`, or the optimizer's default when it is None."""
    if train_config.weight_decay is not None:
        return train_config.weight_decay
    return _DEFAULT_WEIGHT_DECAY.get(train_config.optimizer, 0.0)


def _keras_optimizer(train_config, schedule) -> keras.optimizers.Optimizer:
    name = train_config.optimizer
    beta_2 = (train_config.beta_2 if train_config.beta_2 is not None
              else _DEFAULT_BETA_2.get(name))
    weight_decay = resolved_weight_decay(train_config) or None
    common = {"learning_rate": schedule, "weight_decay": weight_decay}
    opt = keras.optimizers
    builders = {
        "sgd": lambda: (opt.SGD, dict(momentum=0.0)),
        "momentum": lambda: (opt.SGD, dict(momentum=train_config.momentum,
                                           nesterov=train_config.nesterov)),
        "rmsprop": lambda: (opt.RMSprop, dict(epsilon=train_config.epsilon)),
        "adam": lambda: (opt.Adam, dict(beta_1=train_config.beta_1, beta_2=beta_2,
                                        epsilon=train_config.epsilon)),
        "adamw": lambda: (opt.AdamW, dict(beta_1=train_config.beta_1, beta_2=beta_2,
                                          epsilon=train_config.epsilon)),
        "lion": lambda: (opt.Lion, dict(beta_1=train_config.beta_1, beta_2=beta_2)),
        "adafactor": lambda: (opt.Adafactor, {}),
    }
    if name not in builders:
        raise ValueError(f"train.optimizer {name!r} is not implemented")
    cls, kwargs = builders[name]()
    if name == "adamw":
        common["weight_decay"] = weight_decay or 0.0
    pre_reduced = type(cls.__name__, (_PreReducedGradients, cls), {})
    return pre_reduced(**common, **kwargs)


def make_optimizer(train_config, model: keras.Model,
                   total_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer for `model` (create it under the strategy's scope).

    Gradient clipping is not set here: the training step clips the all-reduced gradient
    by its global norm, which Keras' per-replica clipping would not. Weight decay (Keras'
    decoupled decay, `lr * weight_decay * w` per step) skips every variable of rank < 2
    and those named like norms, biases and embeddings. With `train.precision`
    `mixed_float16` the optimizer is wrapped in a `LossScaleOptimizer` (dynamic scale).

    Args:
        train_config: `pipeline.core.config.TrainConfig`.
        model: the model whose variables it will update.
        total_steps: the run's number of updates (the schedule's length).

    Returns:
        A built Keras optimizer.
    """
    optimizer = _keras_optimizer(train_config, make_schedule(train_config, total_steps))
    if optimizer.weight_decay is not None:
        no_decay = [v for v in model.trainable_variables if len(v.shape) < 2]
        optimizer.exclude_from_weight_decay(var_list=no_decay, var_names=_NO_DECAY_NAMES)
    if train_config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer


def describe(optimizer: keras.optimizers.Optimizer) -> dict:
    """The optimizer's resolved settings as JSON (for `train_summary.json`)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    config = inner.get_config()
    config["learning_rate"] = inner._learning_rate.get_config()
    record = {"class": type(inner).__name__, "config": config}
    if inner is not optimizer:
        record["loss_scale"] = {"initial_scale": optimizer.initial_scale,
                                "dynamic_growth_steps": optimizer.dynamic_growth_steps}
    return record
