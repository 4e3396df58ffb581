"""The KerasTuner tuner and oracles of a sweep.

One tuner class serves every algorithm (`random`, `bayesian`, `hyperband` differ only in
the oracle): it runs a trial through `LmHyperModel`, records what the trial spent and why
it failed (a one-line reason; KerasTuner's own message is a traceback that does not
travel to a chief), and reports the objective. Failures never stop the search by
exception: the oracle stops handing out trials after
`tuning.max_consecutive_failed_trials` failures in a row (`StopAfterFailures`), which a
chief serving several workers needs (KerasTuner's own check raises inside the chief's
gRPC handler and leaves it waiting for the failed trial forever). A trial whose worker
went silent is handed to another (`ReclaimLostTrials`); a worker says it is alive from a
thread while its trial runs (`reporting_alive`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from typing import Callable

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

from pipeline.core.artifacts import write_json_atomic
from tuning import results, space
from tuning.budget import TokenBudget, bracket_trials, hyperband_trials
from tuning.hypermodel import LmHyperModel
from tuning.quasi_random import QuasiRandomSampling
from tuning.trial import CHECKPOINT, TrialFailed, failure_reason


COMPLETED, FAILED = TrialStatus.COMPLETED, TrialStatus.FAILED
TRIAL_FILE = "trial.json"  # KerasTuner's record of a trial, in its directory


class StopAfterFailures:
    """Mixed into an oracle: no new trials once the last `max_consecutive_failed_trials`
    ended failed. The streak is read from the saved trials, so it survives a resume."""

    def _check_consecutive_failures(self):
        # Replaced by the check in `populate_space` (see the module doc).
        return None

    def failure_streak(self) -> int:
        """Trials that failed in a row, counting back from the last one to end."""
        streak = 0
        for trial_id in reversed(self.end_order):
            if self.trials[trial_id].status != FAILED:
                break
            streak += 1
        return streak

    def populate_space(self, trial_id):
        if self.failure_streak() >= self.max_consecutive_failed_trials:
            return {"status": "STOPPED"}
        return super().populate_space(trial_id)


class RankFailedLast:
    """Mixed into KerasTuner's Hyperband oracle: a failed trial counts as finished with the
    worst score when a rung picks whom to promote.

    KerasTuner promotes only from COMPLETED trials and waits until more of them are ready
    than the rung throws out; one failed trial in the first rung of a bracket therefore
    starves every later rung, and the bracket never trains anything to the full budget (a
    test shows it). Ranked last, a failed trial is only promoted when too few trials of its
    rung completed, and the tuner fails that continuation at once, training nothing.
    """

    def populate_space(self, trial_id):
        failed = [(trial, trial.score) for trial in self.trials.values()
                  if trial.status == FAILED]
        worst = -math.inf if self.objective.direction == "max" else math.inf
        for trial, _ in failed:
            trial.status, trial.score = COMPLETED, worst
        try:
            return super().populate_space(trial_id)
        finally:
            for trial, score in failed:
                trial.status, trial.score = FAILED, score


class ReclaimLostTrials:
    """Mixed into an oracle: a trial whose tuner has not been heard from for
    `reclaim_after` seconds goes to the next tuner that asks, and runs from its start.

    KerasTuner keeps one ongoing trial per tuner name and its chief ends only when none is
    ongoing, so a worker that dies mid-trial holds its trial, and the chief waits, for
    ever (unless a worker of the same name comes back). Tuners report while a trial runs
    (`reporting_alive`: an `update_trial` without metrics). A tuner that asks
    when no new trial is left but others are still ongoing is told to wait (IDLE) rather
    than to stop, so that someone is there to take a lost trial over. If the first tuner
    was only slow and reports the end after all, the first report of a trial's end counts
    and a later one is ignored.
    """

    reclaim_after = math.inf
    idle_seconds = 1.0  # between a waiting tuner's requests (the chief serves one at a time)
    clock = staticmethod(time.monotonic)

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        self._heard(tuner_id)
        self._reclaim(tuner_id)
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.STOPPED and self.ongoing_trials:
            self.tuner_ids.add(tuner_id)  # still a tuner of the sweep: the chief waits for it
            time.sleep(self.idle_seconds)
            return Trial(self.hyperparameters.copy(), status=TrialStatus.IDLE)
        return trial

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                self._heard(tuner_id)
        # A sign of life only (KerasTuner wants the objective in a report), or the late
        # report of a reclaimed trial that the tuner it went to has ended.
        if not metrics or self._ended(trial_id):
            return self.trials[trial_id]
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        if self._ended(trial.trial_id):
            return None
        super().end_trial(trial)
        # KerasTuner saves before it drops the trial from the ongoing ones, so a chief
        # restarted from that state would run the ended trial again.
        self.save()

    def reload(self):
        super().reload()  # puts the trials ongoing at the save up for a retry
        self._retry_queue = [t for t in self._retry_queue if t not in self.end_order]

    def _ended(self, trial_id: str) -> bool:
        ongoing = {t.trial_id for t in self.ongoing_trials.values()}
        return trial_id in self.end_order and trial_id not in ongoing

    def _last_heard(self) -> dict[str, float]:
        """Tuner -> when it last called (not state: a restarted chief starts afresh)."""
        return self.__dict__.setdefault("_heard_at", {})

    def _heard(self, tuner_id: str) -> None:
        self._last_heard()[tuner_id] = self.clock()

    def _reclaim(self, asking: str) -> None:
        heard = self._last_heard()
        now = self.clock()
        for tuner_id, trial in list(self.ongoing_trials.items()):
            # A tuner from before a restart of the chief gets the full time to report.
            silent = now - heard.setdefault(tuner_id, now)
            if tuner_id == asking or silent <= self.reclaim_after:
                continue
            del self.ongoing_trials[tuner_id]
            self.tuner_ids.discard(tuner_id)
            self._retry_queue.append(trial.trial_id)
            print(f"trial {int(trial.trial_id) + 1} of {tuner_id} lost ({silent:.0f} s without "
                  f"a report): handed out again", file=sys.stderr, flush=True)


class AtomicSaves:
    """Mixed into an oracle: `oracle.json` and each `trial.json` are written whole or not at
    all (a temporary file and a rename). KerasTuner writes them in place, after every
    trial's start and end, so a kill in the middle left a truncated file that no rerun
    could load."""

    def save(self):
        write_json_atomic(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json_atomic(os.path.join(self._get_trial_dir(trial.trial_id), TRIAL_FILE),
                          trial.get_state())


def make_oracle(tuning, objective: str):
    """The oracle of `tuning.algorithm`, with the space as data and the sweep's seed.

    Args:
        tuning: `TuningConfig`.
        objective: the metric name to minimize.

    Returns:
        A KerasTuner oracle (`max_trials` also caps Hyperband).
    """
    oracles = keras_tuner.oracles
    common = dict(objective=keras_tuner.Objective(objective, direction="min"),
                  hyperparameters=space.hyperparameters(tuning.space),
                  tune_new_entries=False, allow_new_entries=False, seed=tuning.seed,
                  max_retries_per_trial=0,
                  max_consecutive_failed_trials=tuning.max_consecutive_failed_trials)
    if tuning.algorithm == "hyperband":
        band = tuning.hyperband
        cls = _ours(type("RankFailedLastHyperbandOracle",
                         (RankFailedLast, oracles.HyperbandOracle), {}), tuning.sampler)
        oracle = cls(max_epochs=band.max_units, factor=band.factor,
                     hyperband_iterations=band.iterations, **common)
        oracle.max_trials = tuning.max_trials
    else:
        base = {"random": oracles.RandomSearchOracle,
                "bayesian": oracles.BayesianOptimizationOracle}[tuning.algorithm]
        oracle = _ours(base, tuning.sampler)(max_trials=tuning.max_trials, **common)
    oracle.reclaim_after = tuning.reclaim_after_seconds
    return oracle


def _ours(oracle_class, sampler: str):
    sampling = (QuasiRandomSampling,) if sampler == "quasi_random" else ()
    return type(f"Lmpipe{oracle_class.__name__}",
                (AtomicSaves, ReclaimLostTrials, StopAfterFailures, *sampling, oracle_class), {})


def report_every(reclaim_after: float) -> float:
    """Seconds between a tuner's signs of life: four chances before it counts as lost, and
    a chief that hears from each worker at least once a minute."""
    return min(60.0, reclaim_after / 4)


@contextlib.contextmanager
def reporting_alive(oracle, trial_id: str, every: float):
    """While the body runs, tell `oracle` every `every` seconds that the tuner of trial
    `trial_id` is alive (`ReclaimLostTrials`).

    From a thread, because the trial's own code can be silent for long: building the
    model, a slow step on a big model, the final evaluation. The thread is not joined (a
    call to a chief that went away can wait for KerasTuner's client timeout); a report that
    arrives after the trial ended is ignored by the oracle.
    """
    stop = threading.Event()

    def report():
        while not stop.wait(every):
            try:
                oracle.update_trial(trial_id, {})
            except Exception:  # noqa: BLE001 - the chief busy or gone: the trial finds out
                pass

    threading.Thread(target=report, name=f"alive-{trial_id}", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


def planned_trials(tuning) -> int:
    """How many trials the sweep will run at most (for `trial i/n`)."""
    if tuning.algorithm != "hyperband":
        return tuning.max_trials
    band = tuning.hyperband
    return min(tuning.max_trials, hyperband_trials(band.max_units, band.factor, band.iterations))


def hyperband_cut_short(tuning) -> str | None:
    """A warning when `tuning.max_trials` stops Hyperband before its brackets end (KerasTuner's
    Hyperband plans its own number of trials; here `max_trials` caps it), else None."""
    if tuning.algorithm != "hyperband":
        return None
    band = tuning.hyperband
    planned = hyperband_trials(band.max_units, band.factor, band.iterations)
    if tuning.max_trials >= planned:
        return None
    first = bracket_trials(band.max_units, band.factor)[0]
    unfinished = (f"; no trial trains the full budget before trial {first}"
                  if tuning.max_trials < first else "")
    return (f"warning: tuning.max_trials {tuning.max_trials} stops Hyperband after "
            f"{tuning.max_trials} of its {planned} trials{unfinished}. Set tuning.max_trials: "
            f"{planned} to run all its brackets")


class TokenBudgetTuner(keras_tuner.Tuner):
    """Runs trials of an `LmHyperModel` and records each (`results.RECORD` in its directory).

    Args:
        oracle: from `make_oracle`.
        hypermodel: the `LmHyperModel`.
        objective: the objective's name (`eval_loss` or `eval_perplexity`).
        total: the planned number of trials (progress only).
        log: progress lines (stderr).
        report_every: seconds between signs of life to the oracle while a trial runs.
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name, ...).
    """

    def __init__(self, oracle, hypermodel: LmHyperModel, objective: str, total: int,
                 log: Callable[[str], None], report_every: float = 60.0, **kwargs):
        super().__init__(oracle, hypermodel, overwrite=False, **kwargs)
        # KerasTuner prints every failed trial's traceback to stderr when DEBUG is on (its
        # default); the log has our one-line reason, and the traceback stays in the
        # trial's `trial.json` (`message`).
        keras_tuner.src.config.DEBUG = False
        self.objective_name = objective
        self.total = total
        self.log = log
        self.report_every = report_every

    def save(self):
        # As KerasTuner's, with the tuner's own file written atomically (`AtomicSaves`).
        if not self._is_worker():
            self.oracle.save()
        write_json_atomic(self._get_tuner_fname(), self.get_state())

    def _populate_initial_space(self):
        # The space is data, fully declared up front: nothing to discover by building.
        return None

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        label = f"trial {int(trial.trial_id) + 1}/{self.total}"
        plan = self.hypermodel.plan(values)
        self.log(f"{label} [{self.tuner_id}]: {_describe(values, plan, self.hypermodel.budget)}")
        started = time.time()
        hyperband = self.hypermodel.budget.max_units > 1
        record = {"trial_id": trial.trial_id, "tuner": self.tuner_id,
                  "values": space.tuned_values(values),
                  "units": plan.units if hyperband else None,
                  "start_units": plan.start_units if hyperband else None, "parent": plan.parent}
        try:
            with reporting_alive(self.oracle, trial.trial_id, self.report_every):
                outcome = self._fit(trial, plan, label)
        except Exception as err:
            reason = failure_reason(err)
            record.update(status="failed", reason=reason, seconds=_since(started),
                          tokens=err.tokens if isinstance(err, TrialFailed) else 0)
            results.write_record(self.get_trial_dir(trial.trial_id), record)
            self.log(f"{label} failed: {reason}")
            raise keras_tuner.errors.FailedTrialError(reason) from err
        value = (outcome.eval_loss if self.objective_name == "eval_loss"
                 else math.exp(min(outcome.eval_loss, 700.0)))
        # Counted from the steps the trainer took (a continuation whose parent left no
        # checkpoint trained from scratch, and spent that).
        tokens = (outcome.steps - outcome.start_step) * plan.tokens_per_step
        record.update(status="completed", objective=value, eval_loss=outcome.eval_loss,
                      tokens=tokens, model_tokens=outcome.steps * plan.tokens_per_step,
                      steps=outcome.steps, final_train_loss=outcome.final_train_loss,
                      continued=outcome.resumed, seconds=_since(started))
        results.write_record(self.get_trial_dir(trial.trial_id), record)
        self.log(f"{label}: {self.objective_name} {value:.4f} ({tokens:,} tokens, "
                 f"{record['seconds']:.1f}s)")
        return {self.objective_name: value}

    def _fit(self, trial, plan, label: str):
        if plan.parent and self.oracle.get_trial(plan.parent).status == FAILED:
            # Promoted only because too few of its rung completed (`RankFailedLast`).
            raise TrialFailed(f"continues trial {int(plan.parent) + 1}, which failed")
        model = self._try_build(trial.hyperparameters)
        checkpoint_in = (os.path.join(self.get_trial_dir(plan.parent), CHECKPOINT)
                         if plan.parent else None)
        # Only a model short of the full budget can be promoted and continued.
        promotable = plan.units < self.hypermodel.budget.max_units
        checkpoint_out = (os.path.join(self.get_trial_dir(trial.trial_id), CHECKPOINT)
                          if promotable else None)
        return self.hypermodel.fit(trial.hyperparameters, model, checkpoint_in=checkpoint_in,
                                   checkpoint_out=checkpoint_out,
                                   log=lambda line: self.log(f"{label} {line}"))


def _since(started: float) -> float:
    return round(time.time() - started, 3)


def _describe(values: dict, plan, budget: TokenBudget) -> str:
    parts = [f"{key}={_show(value)}" for key, value in space.tuned_values(values).items()]
    if budget.max_units > 1:
        parts.append(f"units {plan.start_units}->{plan.units}/{budget.max_units}"
                     + (f" (continues trial {int(plan.parent) + 1})" if plan.parent else ""))
    return ", ".join(parts)


def _show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
