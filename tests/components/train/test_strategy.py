"""`train.strategy` names map to the tf.distribute strategies they promise (the two-worker
run: `test_multi_worker.py`; two logical CPUs: `test_loop.py`)."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UsageError


@pytest.mark.parametrize("name, kind, replicas", [
    ("auto", "_DefaultDistributionStrategy", 1),
    ("default", "_DefaultDistributionStrategy", 1),
    ("one_device", "OneDeviceStrategy", 1),
    ("mirrored", "MirroredStrategy", 1),
])
def test_strategy_names_on_a_single_cpu(name, kind, replicas):
    import tensorflow as tf

    from components.train.strategy import make_strategy

    assert not tf.config.list_logical_devices("GPU")
    strategy, placement = make_strategy(name)
    assert type(strategy).__name__ == kind
    assert strategy.num_replicas_in_sync == replicas
    assert placement.is_chief and placement.num_workers == 1
    assert placement.name == ("default" if name == "auto" else name)


def test_tpu_without_a_tpu_is_a_usage_error():
    from components.train.strategy import make_strategy

    with pytest.raises(UsageError, match="train.strategy is tpu but no TPU was found"):
        make_strategy("tpu")


@pytest.mark.parametrize("cluster, task, chief, workers", [
    ({"chief": ["a"], "worker": ["b", "c"]}, ("chief", 0), True, 3),
    ({"chief": ["a"], "worker": ["b", "c"]}, ("worker", 0), False, 3),
    ({"chief": ["a"], "worker": ["b", "c"]}, ("worker", 1), False, 3),
    ({"worker": ["a", "b"]}, ("worker", 0), True, 2),
    ({"worker": ["a", "b"]}, ("worker", 1), False, 2),
])
def test_only_the_chief_writes(cluster, task, chief, workers):
    from components.train.strategy import placement_of

    placement = placement_of(cluster, *task)
    assert (placement.is_chief, placement.num_workers, placement.task_id) == (chief, workers,
                                                                             task[1])
