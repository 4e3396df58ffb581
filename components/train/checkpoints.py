"""Checkpoints a killed run resumes from: model, optimizer, loop state and data position.

A `tf.train.Checkpoint` over the model, the optimizer (its slots and iteration count,
hence the learning-rate schedule's position), the loop's `TrainState` (step, early-stopping
state) and the training data iterator (tf.data saves the shuffle buffer and the read
position). The per-step seeds of input corruption and of dropout derive from the step
(`loop.Trainer`), so they need no state of their own. `tf.train.CheckpointManager` writes
each checkpoint's files first and then points its `checkpoint` index at them, so a kill
mid-save leaves the previous one as the latest; it keeps the newest `keep` checkpoints. A
checkpoint that cannot be read (a file truncated by a crash or a full disk, an index that
lost track of its files) is skipped, with a line saying so, for the newest one before it
that can; when none can, the run stops rather than start again from step 0 behind the
user's back.

With several workers, every worker saves (the documented MultiWorkerMirroredStrategy
pattern), but only the chief into the real directory; the others write to a scratch
directory of their own and delete it. All workers restore the chief's checkpoint: they
read identical global batches, so the chief's data position is everyone's.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import Callable

import tensorflow as tf

PREFIX = "ckpt"
STATE_FILE = "checkpoint"
# What reading a damaged checkpoint raises (TensorFlow reports a short read as IndexError).
UNREADABLE = (AssertionError, ValueError, IndexError, tf.errors.OpError)


class CheckpointsUnreadable(RuntimeError):
    """The run's checkpoints exist but none of them can be restored."""


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
        self._notes = _drop_unreadable_state(own)
        self.manager = tf.train.CheckpointManager(self.checkpoint, own,
                                                  max_to_keep=keep if is_chief else 1,
                                                  checkpoint_name=PREFIX)

    def latest(self) -> str | None:
        """The chief's newest complete checkpoint, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self, log: Callable[[str], None] | None = None) -> str | None:
        """Restore the newest checkpoint that can be read, if there is one.

        Args:
            log: where a skipped (unreadable) checkpoint is reported (None: stderr).

        Returns:
            Its path, or None when the run starts fresh (no checkpoint at all).

        Raises:
            CheckpointsUnreadable: there are checkpoints and none of them can be read.
        """
        log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        for note in self._notes:
            log(note)
        found = candidates(self.directory)
        for path in found:
            try:
                self.checkpoint.restore(path).assert_consumed()
                return path
            except UNREADABLE as err:
                log(f"checkpoint {path} cannot be read ({_first_line(err)}); trying the "
                    "one before it")
        if found:
            raise CheckpointsUnreadable(
                f"none of the {len(found)} checkpoint(s) in {self.directory} can be read; "
                "delete that directory to train from step 0")
        return None

    def save(self, step: int) -> str:
        """Save the current state as checkpoint number `step`.

        Returns:
            The checkpoint's path (a scratch path on non-chief workers).
        """
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            shutil.rmtree(self._own, ignore_errors=True)
        return path


def candidates(directory: str) -> list[str]:
    """Every checkpoint in `directory` by its files, newest (highest step) first: the
    `checkpoint` index file may be missing, unreadable or point at deleted files."""
    pattern = re.compile(rf"{PREFIX}-(\d+)\.index")
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    steps = sorted((int(m.group(1)) for m in map(pattern.fullmatch, names) if m), reverse=True)
    return [os.path.join(directory, f"{PREFIX}-{step}") for step in steps]


def _drop_unreadable_state(directory: str) -> list[str]:
    """Remove an index file that `tf.train.CheckpointManager` would refuse to start from
    (empty or without a latest checkpoint); the checkpoints themselves are found by name."""
    try:
        tf.train.get_checkpoint_state(directory)
        return []
    except ValueError as err:
        os.remove(os.path.join(directory, STATE_FILE))
        return [f"ignoring the unreadable index {os.path.join(directory, STATE_FILE)} "
                f"({_first_line(err)})"]


def _first_line(err: BaseException) -> str:
    text = (getattr(err, "message", None) or str(err)).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def step_of(path: str | None) -> int | None:
    """The step a checkpoint path (`.../ckpt-<step>`) was saved at."""
    if path is None:
        return None
    return int(path.rsplit("-", 1)[1])
