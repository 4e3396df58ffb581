"""The tf.distribute strategy named by `train.strategy`."""

from __future__ import annotations

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Build the strategy for `train.strategy`.

    Args:
        name: `auto` (Mirrored over all GPUs if more than one, one device on a single GPU,
            otherwise the default strategy), `default`, `one_device` (the first GPU, else
            the CPU) or `mirrored` (all GPUs, else every logical CPU device).

    Returns:
        The strategy; build the model and optimizer under its `scope()`.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device" if gpus else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy((gpus[0] if gpus else
                                                tf.config.list_logical_devices("CPU")[0]).name)
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise ValueError(f"unknown strategy {name!r}")
