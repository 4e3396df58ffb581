"""What a run reports while it trains: progress on stderr, a CSV and TensorBoard logs.

Rows go to `train_log.csv` (one per logged step, eval columns filled at evaluations)
and to TensorBoard under `logs/train` and `logs/eval`, both in the run's log directory.
That directory outlives a killed run (it sits beside the checkpoints), so a resumed run
appends to the same files: rows after the resumed step are dropped first, the rest of the
curve is kept.
"""

from __future__ import annotations

import csv
import os
import sys
from typing import Callable

import tensorflow as tf

CSV_FILE = "train_log.csv"
COLUMNS = ["step", "loss", "learning_rate", "grad_norm", "tokens_per_second", "mfu",
           "elapsed_seconds", "eval_loss"]


class Monitor:
    """Writes the run's rows (chief only) and progress lines.

    Args:
        log_dir: where `train_log.csv` and the TensorBoard `logs/` go, or None (this
            process writes nothing: a non-chief worker).
        total_steps: the run's planned steps (for the progress line).
        log: where progress lines go (stderr).
        resume_step: the step a resumed run continues from (CSV rows after it are stale).
    """

    def __init__(self, log_dir: str | None, total_steps: int, log: Callable[[str], None],
                 resume_step: int = 0):
        self.log_dir = log_dir
        self.total_steps = total_steps
        self.log = log
        self._progbar = _progbar(total_steps) if log_dir and sys.stderr.isatty() else None
        self._writers = {}
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            _truncate_csv(os.path.join(log_dir, CSV_FILE), resume_step)
            self._writers = {
                kind: tf.summary.create_file_writer(os.path.join(log_dir, "logs", kind))
                for kind in ("train", "eval")}

    def train_row(self, row: dict) -> None:
        """Report a logged training step (`COLUMNS` but eval_loss)."""
        mfu = "" if row.get("mfu") is None else f"  mfu {row['mfu']:.1%}"
        line = (f"step {row['step']}/{self.total_steps}  loss {row['loss']:.4f}  "
                f"lr {row['learning_rate']:.3g}  grad norm {row['grad_norm']:.3g}  "
                f"tokens/s {row['tokens_per_second']:,.0f}{mfu}")
        if self._progbar is not None:
            _on_stderr(lambda: self._progbar.update(row["step"], values=[
                ("loss", row["loss"]), ("tokens/s", row["tokens_per_second"])]))
        else:
            self.log(line)
        self._write("train", row["step"], {k: row.get(k) for k in
                                           ("loss", "learning_rate", "grad_norm",
                                            "tokens_per_second", "mfu")})
        self._append(row)

    def eval_row(self, step: int, loss: float | None, note: str = "") -> None:
        """Report an evaluation at `step`."""
        self.log(f"eval at step {step}: loss {'n/a' if loss is None else f'{loss:.4f}'}{note}")
        self._write("eval", step, {"loss": loss})
        self._append({"step": step, "eval_loss": loss})

    def _write(self, kind: str, step: int, values: dict) -> None:
        if not self._writers:
            return
        with self._writers[kind].as_default(step=step):
            for name, value in values.items():
                if value is not None:
                    tf.summary.scalar(name, value)
        self._writers[kind].flush()

    def _append(self, row: dict) -> None:
        if not self.log_dir:
            return
        path = os.path.join(self.log_dir, CSV_FILE)
        new = not os.path.exists(path)
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def _truncate_csv(path: str, resume_step: int) -> None:
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _progbar(total_steps: int):
    import keras

    return keras.utils.Progbar(total_steps, stateful_metrics=["loss", "tokens/s"],
                               unit_name="step")


def _on_stderr(update: Callable[[], None]) -> None:
    """Keras' progress bar prints to stdout; stdout is for results, so point it at stderr."""
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        update()
    finally:
        sys.stdout = stdout
