"""Distil and prune the same tiny student under the default strategy and under
MirroredStrategy over two logical CPU devices, with the same global batch; print the
losses, the weights and the pruned kernels' sparsity as JSON.

Runs in its own process: logical devices must be configured before TensorFlow starts.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from components.train.distill import Distiller
    from components.train.pruning import Pruner, Schedule
    from components.train.strategy import make_strategy
    from pipeline.core.config import TrainConfig
    from tests.components.train.helpers import make_trainer, repeat
    from tests.compression.helpers import TEACHER
    from tests.compression.test_pruning import _batch

    config = TrainConfig(steps=8, batch_size=8, learning_rate=1e-2, warmup_steps=1)
    result = {}
    for name in ("default", "mirrored"):
        strategy, _ = make_strategy(name)
        teacher = make_trainer(strategy, TrainConfig(steps=1, seed=5), TEACHER).model
        teacher.trainable = False
        trainer = make_trainer(strategy, config)
        trainer.distiller = Distiller(teacher, 0.5, 2.0)
        trainer.pruner = Pruner(trainer.model, Schedule(target=0.5, initial=0.0, begin=2, end=6,
                                                        frequency=2, power=3.0), strategy)
        iterator = iter(repeat(_batch()))
        losses = [float(trainer.run_steps(iterator, 1)["loss"]) for _ in range(config.steps)]
        # Every replica's copy of each pruned kernel.
        copies = [[np.asarray(c).tolist() for c in strategy.experimental_local_results(v.value)]
                  for v in trainer.pruner.targets]
        result[name] = {"replicas": strategy.num_replicas_in_sync, "losses": losses,
                        "weights": [np.asarray(v.value).tolist()
                                    for v in trainer.model.trainable_variables],
                        "kernels": copies}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
