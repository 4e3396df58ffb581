"""The sweep's artifact: `best.json`, `trials.csv`, `plot.png` (and `sweep.json`).

Each trial leaves `lmpipe_trial.json` in its KerasTuner trial directory (written by
whichever process ran it, so a chief sees its workers' trials on the shared directory):
status, the one-line reason of a failure, the tokens it trained on, its wall time.

`best.json` is the flat dict of overrides that `components/train/hparams.py` applies
(`train.learning_rate`, `model.num_layers`, ...). When the batch size was tuned and the
training run's budget is `train.steps`, it also carries `train.steps` rescaled to the same
number of tokens: a run at the tuned batch size then trains on as many tokens as the
configured one would have, the same rule the trials were compared by.
"""

from __future__ import annotations

import csv
import json
import math
import os

from pipeline.core.artifacts import write_json_atomic

RECORD = "lmpipe_trial.json"
BEST_FILE = "best.json"
TRIALS_FILE = "trials.csv"
PLOT_FILE = "plot.png"
SWEEP_FILE = "sweep.json"
FIXED_COLUMNS = ("tokens", "model_tokens", "steps", "seconds", "units", "parent", "tuner",
                 "reason")


def write_record(trial_dir: str, record: dict) -> None:
    """Write a trial's record into its directory."""
    os.makedirs(trial_dir, exist_ok=True)
    write_json_atomic(os.path.join(trial_dir, RECORD), record)


def read_record(trial_dir: str) -> dict | None:
    """A trial's record, or None when it never finished (killed mid-trial)."""
    try:
        with open(os.path.join(trial_dir, RECORD), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def trial_rows(oracle, project_dir: str, names: list[str], objective: str) -> list[dict]:
    """One row per trial, in the order they started.

    Args:
        oracle: the sweep's oracle (the chief's, or the single process's).
        project_dir: the KerasTuner project directory.
        names: the tuned config keys (columns).
        objective: the objective's name (a column).

    Returns:
        Rows with `trial` (1-based), `trial_id`, `status`, the values, the objective and
        `FIXED_COLUMNS`.
    """
    rows = []
    for trial_id in oracle.start_order:
        trial = oracle.trials[trial_id]
        record = read_record(os.path.join(project_dir, f"trial_{trial_id}"))
        if record is None and trial.status == "COMPLETED":
            # Removed from outside: KerasTuner's trial.json still holds the score, so the
            # trial keeps its place in the choice of best.
            record = {"objective": trial.score,
                      "reason": f"{RECORD} missing: tokens and seconds unknown"}
        record = record or {}
        status = record.get("status") or trial.status.lower()
        row = {"trial": int(trial_id) + 1, "trial_id": trial_id, "status": status}
        row.update({name: trial.hyperparameters.values.get(name) for name in names})
        row[objective] = record.get("objective") if status == "completed" else None
        row.update({column: record.get(column) for column in FIXED_COLUMNS})
        if row["parent"] is not None:
            row["parent"] = int(row["parent"]) + 1
        rows.append(row)
    return rows


def best_row(rows: list[dict], objective: str) -> dict | None:
    """The completed row with the lowest objective (the earliest on a tie)."""
    done = [r for r in rows if r["status"] == "completed" and r[objective] is not None
            and math.isfinite(r[objective])]
    return min(done, key=lambda r: r[objective]) if done else None


def best_overrides(row: dict, names: list[str], train_config, sequence_length: int) -> dict:
    """`best.json`: the best trial's values, plus `train.steps` kept at the run's tokens.

    Args:
        row: the best row.
        names: the tuned config keys.
        train_config: the config's `TrainConfig`.
        sequence_length: tokens per example.

    Returns:
        Config key -> value.
    """
    best = {name: row[name] for name in names}
    size = best.get("train.batch_size")
    if size is not None and size != train_config.batch_size and train_config.steps is not None:
        tokens = train_config.steps * train_config.batch_size * sequence_length
        best["train.steps"] = -(-tokens // (size * sequence_length))
    return best


def write_table(path: str, rows: list[dict]) -> None:
    """Write the rows as CSV (empty cells for missing values)."""
    columns = list(rows[0]) if rows else ["trial", "trial_id", "status", *FIXED_COLUMNS]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def write_plot(path: str, rows: list[dict], objective: str, full_units: int) -> None:
    """Objective against learning rate, one series per batch size (PNG).

    Trials at the full budget are filled markers; Hyperband's shorter rungs are hollow.
    Failed trials are crosses along the top edge at their learning rate.

    Args:
        path: the PNG to write.
        rows: the trial rows.
        objective: the objective column.
        full_units: the units of a full budget (1 unless Hyperband).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=100)
    done = [r for r in rows if r["status"] == "completed" and r[objective] is not None]
    _plot_series(axes, done, objective, full_units)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        top = max((r[objective] for r in done), default=1.0)
        axes.plot([_x(r) for r in failed], [top] * len(failed), "x", color="black",
                  label="failed")
    tuned = any(_lr(r) is not None for r in rows)
    if tuned:
        axes.set_xscale("log")
    axes.set_xlabel("learning rate" if tuned else "trial (learning rate not tuned)")
    axes.set_ylabel(objective)
    axes.set_title(f"{len(done)} completed, {len(failed)} failed trials")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def _plot_series(axes, done: list[dict], objective: str, full_units: int) -> None:
    """One line per batch size through its full-budget trials; shorter rungs as hollow dots."""
    sizes = sorted({r.get("train.batch_size") for r in done}, key=lambda s: (s is None, s))
    for index, size in enumerate(sizes):
        color = f"C{index % 10}"
        label = "batch size (config)" if size is None else f"batch size {size}"
        series = sorted((r for r in done if r.get("train.batch_size") == size), key=_x)
        for full in (True, False):
            points = [r for r in series if ((r["units"] or full_units) >= full_units) == full]
            if points:
                axes.plot([_x(r) for r in points], [r[objective] for r in points],
                          "o-" if full else "o", color=color,
                          markerfacecolor=color if full else "none", linewidth=1,
                          label=label if full else f"{label} (shorter rung)")


def _lr(row: dict):
    return row.get("train.learning_rate")


def _x(row: dict):
    """The learning rate, or the trial number when the learning rate is not tuned."""
    return row["trial"] if _lr(row) is None else _lr(row)


def format_table(path: str) -> str:
    """`trials.csv` as aligned text columns (for the terminal)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return ""
    keep = [i for i, name in enumerate(rows[0])
            if name not in ("trial_id", "model_tokens", "steps")
            and any(row[i] for row in rows[1:])]
    cells = [[_short(row[i]) for i in keep] for row in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(keep))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in cells)


def _short(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text if len(text) <= 60 else text[:57] + "..."
    if value.is_integer() and "." not in text and "e" not in text.lower():
        return text
    return f"{value:.4g}"
