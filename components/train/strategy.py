"""The tf.distribute strategy named by `train.strategy`, and who writes the outputs."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from pipeline.core.errors import UsageError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


@dataclass(frozen=True)
class Placement:
    """Where this process sits in the training cluster.

    Attributes:
        name: the strategy actually used (`auto` resolved).
        task_type: `chief`, `worker` (multi-worker) or None (one process).
        task_id: the index within `task_type`.
        is_chief: whether this process writes the artifact, logs and checkpoints. On
            Vertex AI every replica gets the same output paths, so only one may write.
        num_workers: processes training together.
    """

    name: str
    task_type: str | None = None
    task_id: int = 0
    is_chief: bool = True
    num_workers: int = 1


def find_tpu():
    """A TPU cluster resolver if this machine has (or is configured for) a TPU, else None."""
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver
    try:
        # Finds a Cloud TPU named by TPU_NAME or the GKE/Vertex environment.
        return resolver()
    except (ValueError, RuntimeError):
        pass
    if tf.config.list_physical_devices("TPU"):
        return resolver(tpu="local")
    return None


def make_strategy(name: str) -> tuple[tf.distribute.Strategy, Placement]:
    """Build the strategy for `train.strategy`.

    Args:
        name: `auto` (TPU if a resolver finds one, Mirrored over all GPUs if there is more
            than one, otherwise the default strategy), `default`, `one_device` (the first
            GPU, else the CPU), `mirrored` (all GPUs, else every logical CPU device),
            `multi_worker` (MultiWorkerMirroredStrategy over the cluster in `TF_CONFIG`;
            call this before any other TensorFlow work) or `tpu`.

    Returns:
        (strategy, placement); build the model and optimizer under `strategy.scope()`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}")
    tpu = find_tpu() if name in ("auto", "tpu") else None
    if name == "tpu" and tpu is None:
        raise UsageError("train.strategy is tpu but no TPU was found (no TPU_NAME and no "
                         "local TPU devices)")
    if tpu is not None:
        tf.config.experimental_connect_to_cluster(tpu)
        tf.tpu.experimental.initialize_tpu_system(tpu)
        return tf.distribute.TPUStrategy(tpu), Placement("tpu")
    if name == "multi_worker":
        return _multi_worker()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy(), Placement("default")
    if name == "one_device":
        device = (gpus or tf.config.list_logical_devices("CPU"))[0]
        return tf.distribute.OneDeviceStrategy(device.name), Placement("one_device")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices]), Placement("mirrored")


def _multi_worker() -> tuple[tf.distribute.Strategy, Placement]:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec().as_dict()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return strategy, placement_of(cluster, resolver.task_type, int(resolver.task_id or 0))


def placement_of(cluster: dict, task_type: str | None, task_id: int) -> Placement:
    """This process's place in a `TF_CONFIG` cluster.

    Vertex AI names the first replica `chief` and the others `worker`; in a cluster without
    a chief, worker 0 plays its part.

    Args:
        cluster: job name -> addresses, as in `TF_CONFIG["cluster"]`.
        task_type: this process's job name.
        task_id: its index in that job.

    Returns:
        The placement under `multi_worker`.
    """
    is_chief = (task_type in (None, "chief")
                or (task_type == "worker" and task_id == 0 and "chief" not in cluster))
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")) or 1
    return Placement("multi_worker", task_type, task_id, is_chief, workers)
