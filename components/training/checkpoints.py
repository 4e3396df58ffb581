"""Checkpoints a killed run resumes from: model, optimizer, loop state and data position.

A `tf.train.Checkpoint` over the model, the optimizer (its slots and iteration count,
hence the learning-rate schedule's position), the loop's `TrainState` (step, early-stopping
state) and the training data iterator (tf.data saves the shuffle buffer and the read
position). The per-step seeds of input corruption derive from the step, so they need no
state of their own. `tf.train.CheckpointManager` writes each checkpoint's files first and
then points its `checkpoint` index at them, so a kill mid-save leaves the previous one as
the latest; it keeps the newest `keep` checkpoints.

With several workers, every worker saves (the documented MultiWorkerMirroredStrategy
pattern), but only the chief into the real directory; the others write to a scratch
directory of their own and delete it. All workers restore the chief's checkpoint: they
read identical global batches, so the chief's data position is everyone's.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

PREFIX = "ckpt"


class Checkpoints:
    """Saving and restoring one run's checkpoints.

    Args:
        directory: the run's checkpoint directory (stable across restarts of the run).
        objects: name -> trackable object (model, optimizer, state, iterator).
        keep: checkpoints to keep.
        is_chief: whether this process owns `directory`.
        task_id: this worker's index (names a non-chief's scratch directory).
    """

    def __init__(self, directory: str, objects: dict, keep: int, is_chief: bool = True,
                 task_id: int = 0):
        self.directory = directory
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(**objects)
        own = directory if is_chief else os.path.join(directory, f".worker-{task_id}")
        self._own = own
        self.manager = tf.train.CheckpointManager(self.checkpoint, own,
                                                  max_to_keep=keep if is_chief else 1,
                                                  checkpoint_name=PREFIX)

    def latest(self) -> str | None:
        """The chief's newest complete checkpoint, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> str | None:
        """Restore the newest checkpoint, if there is one.

        Returns:
            Its path, or None when the run starts fresh.
        """
        path = self.latest()
        if path is not None:
            self.checkpoint.restore(path).assert_consumed()
        return path

    def save(self, step: int) -> str:
        """Save the current state as checkpoint number `step`.

        Returns:
            The checkpoint's path (a scratch path on non-chief workers).
        """
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            shutil.rmtree(self._own, ignore_errors=True)
        return path


def step_of(path: str | None) -> int | None:
    """The step a checkpoint path (`.../ckpt-<step>`) was saved at."""
    if path is None:
        return None
    return int(path.rsplit("-", 1)[1])
