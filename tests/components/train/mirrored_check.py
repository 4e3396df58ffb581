"""Train the same tiny model under the default strategy and under MirroredStrategy over two
logical CPU devices (without and with gradient accumulation), with the same global batch;
print the loss curves and weights.

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

    from components.train.strategy import make_strategy
    from pipeline.core.config import TrainConfig
    from tests.components.train.helpers import make_trainer, repeat

    rng = np.random.default_rng(0)
    segments = np.repeat([[1] * 10 + [2] * 14 + [0] * 8], 8, axis=0).astype(np.int32)
    tokens = np.where(segments > 0, rng.integers(5, 384, segments.shape), 0).astype(np.int32)
    # Uneven target counts per half of the batch: a per-replica mean would differ.
    segments[:4, 20:] = 0
    batch = {"token_ids": tokens, "segment_ids": segments}
    result = {}
    for name, strategy_name, accum in (("default", "default", 1), ("mirrored", "mirrored", 1),
                                       ("mirrored_accum", "mirrored", 2)):
        config = TrainConfig(steps=6, batch_size=8, learning_rate=1e-2, warmup_steps=1,
                             clip_norm=0.5, grad_accum_steps=accum)
        strategy, _ = make_strategy(strategy_name)
        trainer = make_trainer(strategy, config)
        iterator = iter(repeat(batch))
        losses = [float(trainer.run_steps(iterator, 1)["loss"]) for _ in range(config.steps)]
        weights = [np.asarray(v.value).tolist() for v in trainer.model.trainable_variables]
        result[name] = {"replicas": strategy.num_replicas_in_sync, "losses": losses,
                        "weights": weights}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
