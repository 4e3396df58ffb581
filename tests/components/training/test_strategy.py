"""`train.strategy` names map to the tf.distribute strategies they promise."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name, kind, replicas", [
    ("auto", "_DefaultDistributionStrategy", 1),
    ("default", "_DefaultDistributionStrategy", 1),
    ("one_device", "OneDeviceStrategy", 1),
    ("mirrored", "MirroredStrategy", 1),
])
def test_strategy_names_on_a_single_cpu(name, kind, replicas):
    import tensorflow as tf

    from components.training.strategy import make_strategy

    assert not tf.config.list_logical_devices("GPU")
    strategy = make_strategy(name)
    assert type(strategy).__name__ == kind
    assert strategy.num_replicas_in_sync == replicas
