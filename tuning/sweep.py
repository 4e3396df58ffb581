"""A whole sweep: set up, search (resuming what is already done), write the artifact.

The KerasTuner project lives in `<pipeline root>/tune/.sweeps/<sweep key>/`, not in the
execution's scratch directory, because a sweep outlives one execution: rerunning the same
command after a crash finds its finished trials there (KerasTuner's `overwrite=False`),
and raising `tuning.max_trials` (a new config, so a new execution of `tune`) continues
the same sweep instead of starting over. The sweep key is therefore the cache key minus
the settings that only say how long to go on (`max_trials`, `max_consecutive_failed_trials`):
code version, the other config sections and the input artifacts' locations. Every
process of a parallel sweep computes the same key, so they share one project directory.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Callable

from pipeline.core.component import code_version
from pipeline.core.configio import to_dict
from tuning import distributed

SWEEPS = os.path.join("tune", ".sweeps")
# Settings that change how far a sweep goes, not what its trials compute.
NOT_IN_SWEEP_KEY = ("max_trials", "max_consecutive_failed_trials", "chief_wait_seconds")


class SweepFailed(RuntimeError):
    """The sweep ended without a usable result (too many failures in a row, none completed)."""


@dataclass(frozen=True)
class Paths:
    """Where a sweep reads and writes.

    Attributes:
        examples: the examples artifact directory.
        tokenizer: the tokenizer artifact directory.
        output: the hyperparameters artifact directory to write (the chief's).
        root: the pipeline root (the sweep's project directory lives under it).
    """

    examples: str
    tokenizer: str
    output: str
    root: str


def sweep_key(sections: dict, paths: Paths) -> str:
    """The key of the sweep these config sections run on these inputs.

    Args:
        sections: the component's config sections by name (`model`, `task`, `train`, `tuning`).
        paths: the sweep's inputs.

    Returns:
        A hex digest.
    """
    config = {name: to_dict(section) for name, section in sections.items()}
    for name in NOT_IN_SWEEP_KEY:
        config["tuning"].pop(name)
    payload = {"code": code_version("components.tune"), "config": config,
               "inputs": {"examples": os.path.abspath(paths.examples),
                          "tokenizer": os.path.abspath(paths.tokenizer)}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_sweep(paths: Paths, model, task, train, tuning, log: Callable[[str], None]) -> dict:
    """Run (or resume) the sweep and, unless this process is a worker, write the artifact.

    Args:
        paths: inputs, output and root.
        model, task, train, tuning: the config sections.
        log: progress lines (stderr).

    Returns:
        {"hyperparameters": properties} (the chief or single process), {} on a worker.

    Raises:
        SweepFailed: the sweep stopped after too many failures, or none completed.
    """
    os.environ.update(distributed.keras_tuner_env(os.environ))
    role = distributed.role(os.environ)
    from components.train import data
    from tuning import budget, trial, tuner
    from tuning.hypermodel import LmHyperModel

    length = data.read_feature_spec(paths.examples).sequence_length
    tokens = tuning.tokens_per_trial or budget.default_tokens(train, length)
    units = tuning.hyperband.max_units if tuning.algorithm == "hyperband" else 1
    sweep_budget = budget.TokenBudget(tokens_per_trial=tokens, max_units=units)
    key = sweep_key({"model": model, "task": task, "train": train, "tuning": tuning}, paths)
    directory = os.path.join(paths.root, SWEEPS)
    context = trial.make_context(paths.examples, paths.tokenizer, task, train)
    hypermodel = LmHyperModel(context, train, model, sweep_budget)
    sampling = ", quasi-random" if tuning.sampler == "quasi_random" else ""
    log(f"sweep {key[:16]} ({tuning.algorithm}{sampling}, {role}): {tokens:,} tokens per trial, "
        f"{tuning.objective} on the eval split; project {os.path.join(directory, key[:16])}")
    if (cut_short := tuner.hyperband_cut_short(tuning)) and role != "worker":
        log(cut_short)
    waiting = (distributed.waiting_for_chief(os.environ, tuning.chief_wait_seconds)
               if role == "worker" else distributed.serving_as_chief(os.environ)
               if role == "chief" else contextlib.nullcontext())
    check_project(os.path.join(directory, key[:16]))
    # KerasTuner prints to stdout; stdout is for results.
    with contextlib.redirect_stdout(sys.stderr), waiting:
        search = tuner.TokenBudgetTuner(
            tuner.make_oracle(tuning, tuning.objective), hypermodel, tuning.objective,
            tuner.planned_trials(tuning), log,
            report_every=tuner.report_every(tuning.reclaim_after_seconds),
            directory=directory, project_name=key[:16],
            distribution_strategy=context.strategy)
        search.search(verbose=0)
    if role == "worker":
        return {}
    return {"hyperparameters": _publish(search, paths, tuning, train, length, key, sweep_budget)}


def check_project(project_dir: str) -> None:
    """Refuse to resume a sweep whose saved state cannot be read, naming the file.

    KerasTuner (and `results.read_record`) would fail on it with a bare JSON error, and
    every rerun the same way. The files are written atomically (`tuner.AtomicSaves`), so
    this is damage from outside them: a full disk, a hand.

    Args:
        project_dir: the sweep's KerasTuner project directory (it may not exist yet).

    Raises:
        SweepFailed: a state file is not valid JSON.
    """
    patterns = ("oracle.json", "tuner*.json", os.path.join("trial_*", "*.json"))
    for path in sorted(p for pattern in patterns
                       for p in glob.glob(os.path.join(glob.escape(project_dir), pattern))):
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (OSError, ValueError) as err:
            raise SweepFailed(f"{path}: the sweep's saved state cannot be read "
                              f"({str(err).splitlines()[0][:200]}); delete {project_dir} to "
                              "run this sweep again from its first trial") from None


def _publish(search, paths: Paths, tuning, train, length: int, key: str, sweep_budget) -> dict:
    from tuning import results, space

    names = space.names(tuning.space)
    rows = results.trial_rows(search.oracle, search.project_dir, names, tuning.objective)
    streak = search.oracle.failure_streak()
    if streak >= tuning.max_consecutive_failed_trials:
        last = rows[-1]["reason"] if rows else None
        raise SweepFailed(f"{streak} trials in a row failed, the sweep stopped "
                          f"(tuning.max_consecutive_failed_trials); last reason: {last}")
    best = results.best_row(rows, tuning.objective)
    if best is None:
        raise SweepFailed(f"none of {len(rows)} trial(s) completed")
    overrides = results.best_overrides(best, names, train, length)
    out = paths.output
    with open(os.path.join(out, results.BEST_FILE), "w", encoding="utf-8") as f:
        json.dump(overrides, f, indent=2, sort_keys=True)
        f.write("\n")
    results.write_table(os.path.join(out, results.TRIALS_FILE), rows)
    results.write_plot(os.path.join(out, results.PLOT_FILE), rows, tuning.objective,
                       sweep_budget.max_units)
    summary = {"algorithm": tuning.algorithm, "sampler": tuning.sampler,
               "objective": tuning.objective,
               "best_trial": best["trial"], "best_value": best[tuning.objective],
               "best": overrides, "trials": len(rows),
               "completed": sum(r["status"] == "completed" for r in rows),
               "failed": sum(r["status"] == "failed" for r in rows),
               "tokens_per_trial": sweep_budget.tokens_per_trial,
               "tokens_spent": sum(r["tokens"] or 0 for r in rows),
               "sweep_key": key, "project_dir": search.project_dir}
    with open(os.path.join(out, results.SWEEP_FILE), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    _drop_checkpoints(search.project_dir)
    return {k: summary[k] for k in ("algorithm", "objective", "best_trial", "best_value",
                                    "trials", "completed", "failed", "tokens_spent")}


def _drop_checkpoints(project_dir: str) -> None:
    """Hyperband continuations are done once the sweep is: free their checkpoints (the
    trial records stay, which is what resuming and raising max_trials need)."""
    for name in os.listdir(project_dir):
        shutil.rmtree(os.path.join(project_dir, name, "checkpoint"), ignore_errors=True)
