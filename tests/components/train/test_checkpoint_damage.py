"""Resuming when the run's checkpoints are damaged (a crash, a full disk, a hand): the
newest readable checkpoint is used and said so, and a run whose checkpoints are all
unreadable stops instead of training again from step 0 without a word."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.core.config import TrainConfig
from tests.components.train.helpers import weights
from tests.components.train.test_loop import _checkpointed

CONFIG = TrainConfig(steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=2)
SEEDS = [1, 2, 3, 4]


def _plan(total_steps: int = 12):
    from components.train.loop import Plan

    return Plan(total_steps=total_steps, tokens_per_step=256, steps_per_execution=4,
                log_every=3, checkpoint_every=3)


def _fit(trainer, iterator, checkpoints, total_steps: int = 12):
    from components.train.loop import fit
    from components.train.monitor import Monitor

    return fit(trainer, iterator, _plan(total_steps),
               Monitor(None, 12, lambda line: None, resume_step=trainer.step),
               checkpoints=checkpoints)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The weights of the same run trained straight through."""
    trainer, iterator, checkpoints = _checkpointed(tmp_path_factory.mktemp("whole"), CONFIG,
                                                   SEEDS)
    _fit(trainer, iterator, checkpoints)
    return weights(trainer)


def _killed_at_step_10(directory):
    """A run that saved checkpoints 6 and 9 (keep=2) and died at step 10."""
    trainer, iterator, checkpoints = _checkpointed(directory, CONFIG, SEEDS)
    _fit(trainer, iterator, checkpoints, total_steps=10)
    assert sorted(p.name for p in directory.glob("*.index")) == ["ckpt-6.index", "ckpt-9.index"]


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


DAMAGE = {
    # The newest checkpoint's data cut short (TensorFlow: IndexError "Read less bytes").
    "truncated data": (lambda d: _truncate(d / "ckpt-9.data-00000-of-00001", 100), 6),
    "garbled index": (lambda d: (d / "ckpt-9.index").write_bytes(b"\x00" * 64), 6),
    # The index file names a checkpoint whose files are gone: the one before it is there.
    "newest files deleted": (lambda d: [p.unlink() for p in d.glob("ckpt-9.*")], 6),
    # No index file, or an empty one (tf.train.CheckpointManager refuses to start).
    "index file deleted": (lambda d: (d / "checkpoint").unlink(), 9),
    "index file empty": (lambda d: (d / "checkpoint").write_text(""), 9),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_a_readable_one_and_ends_exactly(
        tmp_path, uninterrupted, damage):
    harm, resumed_at = DAMAGE[damage]
    _killed_at_step_10(tmp_path)
    harm(tmp_path)
    trainer, iterator, checkpoints = _checkpointed(tmp_path, CONFIG, SEEDS)
    lines = []
    restored = checkpoints.restore_latest(lines.append)
    assert restored == os.path.join(tmp_path, f"ckpt-{resumed_at}")
    assert trainer.step == resumed_at
    if damage in ("truncated data", "garbled index"):
        assert len(lines) == 1 and "ckpt-9 cannot be read (" in lines[0]
    if damage == "index file empty":
        assert len(lines) == 1 and lines[0].startswith("ignoring the unreadable index")
    result = _fit(trainer, iterator, checkpoints)
    assert result.start_step == resumed_at and result.steps == 12
    for a, b in zip(uninterrupted, weights(trainer)):
        np.testing.assert_array_equal(a, b)


def test_when_no_checkpoint_can_be_read_the_run_stops_and_says_where(tmp_path):
    from components.train.checkpoints import CheckpointsUnreadable

    _killed_at_step_10(tmp_path)
    for index in tmp_path.glob("*.index"):
        index.write_bytes(b"\x00" * 64)
    _, _, checkpoints = _checkpointed(tmp_path, CONFIG, SEEDS)
    lines = []
    with pytest.raises(CheckpointsUnreadable, match=r"none of the 2 checkpoint\(s\) in .* can "
                                                     r"be read; delete that directory"):
        checkpoints.restore_latest(lines.append)
    assert [line.split(" cannot be read")[0] for line in lines] == [
        f"checkpoint {tmp_path}/ckpt-9", f"checkpoint {tmp_path}/ckpt-6"]
