"""`train.precision`: the Keras dtype policy the training model is built under."""

from __future__ import annotations

import contextlib

import keras


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build layers under the global dtype policy `name`, and restore the previous one.

    Layers read the global policy when they are created, so the model built inside keeps
    it; the export copy is built outside, in float32.

    Args:
        name: `float32`, `mixed_bfloat16` or `mixed_float16`.

    Yields:
        The policy.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)
