"""The host side of training: executions, logging, evaluation, checkpoints, stopping.

Each compiled call (`Trainer.run_steps`) runs up to `steps_per_execution` steps and ends
at the next step that must be logged, evaluated or checkpointed, so those happen at
exact step numbers whatever `steps_per_execution` is. Wall time is measured around the
compiled calls only: evaluation and checkpoint writing do not count against tokens/s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from components.train.checkpoints import Checkpoints, step_of
from components.train.loop import Trainer
from components.train.monitor import Monitor

# Compiled calls excluded from the steady-state throughput: the first traces and compiles
# the step, the next ones still warm caches and thread pools.
WARMUP_CALLS = 3


class TrainingDiverged(RuntimeError):
    """The training loss (or gradient) became NaN or Inf; the update was not applied."""


@dataclass(frozen=True)
class Plan:
    """When things happen during a run (all in optimizer steps).

    Attributes:
        total_steps: the run's budget.
        tokens_per_step: token positions per step (global batch x sequence length).
        steps_per_execution: most steps per compiled call.
        log_every, eval_every, checkpoint_every: intervals (None: never; the last step
            is always logged).
        patience: early stopping after this many evaluations without improvement (None: off).
        min_delta: the improvement that counts.
    """

    total_steps: int
    tokens_per_step: int
    steps_per_execution: int = 1
    log_every: int = 10
    eval_every: int | None = None
    checkpoint_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0

    def next_stop(self, step: int) -> int:
        """The step the compiled call starting after `step` must end at."""
        stop = min(self.total_steps, step + self.steps_per_execution)
        for every in (self.log_every, self.eval_every, self.checkpoint_every):
            if every:
                stop = min(stop, (step // every + 1) * every)
        return stop


@dataclass
class FitResult:
    """What a run (this session of it) measured.

    Attributes:
        steps: the step the run ended at.
        start_step: the step this session started from (> 0 after a resume).
        final_train_loss: mean token NLL of the last step.
        stop_reason: `budget` or `early_stopping`.
        evals: [{"step", "loss"}] of the periodic evaluations.
        tokens_per_second: steady-state throughput of this session (None if too short).
        compile_seconds: wall time of the first compiled call (tracing, compiling, running).
        warmup_seconds: wall time of the warm-up calls, the first included.
        train_seconds: wall time inside compiled calls.
        last_row: the last logged row.
    """

    steps: int
    start_step: int
    final_train_loss: float | None
    stop_reason: str
    evals: list[dict] = field(default_factory=list)
    tokens_per_second: float | None = None
    compile_seconds: float | None = None
    warmup_seconds: float | None = None
    train_seconds: float = 0.0
    last_row: dict | None = None


def fit(trainer: Trainer, iterator, plan: Plan, monitor: Monitor,
        evaluate: Callable[[], float | None] | None = None,
        checkpoints: Checkpoints | None = None, flops_per_token: float | None = None,
        peak_flops: float | None = None) -> FitResult:
    """Train from the trainer's current step to `plan.total_steps` (or an early stop).

    Args:
        trainer: the compiled steps (restored from a checkpoint when resuming).
        iterator: the training data iterator (restored with it).
        plan: when to log, evaluate, checkpoint and stop.
        monitor: progress, CSV and TensorBoard.
        evaluate: the eval loss of the current weights (every worker calls it).
        checkpoints: where to save (None: no checkpoints).
        flops_per_token: model training FLOPs per token position, for MFU (None: no MFU).
        peak_flops: the cluster's measured matmul FLOP/s.

    Returns:
        What the run measured.

    Raises:
        TrainingDiverged: a step's loss or gradient norm was NaN or Inf.
    """
    start = trainer.step
    result = FitResult(steps=start, start_step=start, final_train_loss=None,
                       stop_reason="budget")
    clock = _Clock(plan.tokens_per_step)
    last_logged = (0, 0.0)
    if plan.patience is not None and (
            int(trainer.state.evals_without_improvement.numpy()) >= plan.patience):
        # Resumed from the checkpoint written when the run stopped early.
        result.stop_reason = "early_stopping"
    while result.steps < plan.total_steps and result.stop_reason == "budget":
        target = plan.next_stop(result.steps)
        began = time.perf_counter()
        out = trainer.run_steps(iterator, target - result.steps)
        clock.add(out["steps"], time.perf_counter() - began)
        if not out["finite"]:
            raise TrainingDiverged(_divergence_message(out, result.steps + out["steps"] + 1,
                                                       checkpoints))
        result.steps = trainer.step
        result.final_train_loss = float(out["loss"])
        if _due(result.steps, plan.log_every) or result.steps == plan.total_steps:
            rate = clock.rate_since(last_logged)
            last_logged = (clock.steps, clock.seconds)
            mfu = rate * flops_per_token / peak_flops if flops_per_token and peak_flops else None
            result.last_row = {"step": result.steps, "loss": float(out["loss"]),
                               "learning_rate": float(out["learning_rate"]),
                               "grad_norm": float(out["grad_norm"]), "tokens_per_second": rate,
                               "mfu": mfu, "elapsed_seconds": round(clock.seconds, 3)}
            monitor.train_row(result.last_row)
        if evaluate is not None and _due(result.steps, plan.eval_every):
            loss = evaluate()
            stop = _early_stopping(trainer, loss, plan)
            result.evals.append({"step": result.steps, "loss": loss})
            monitor.eval_row(result.steps, loss, "; stopping early (no improvement in "
                             f"{plan.patience} evaluations)" if stop else "")
            if stop:
                result.stop_reason = "early_stopping"
        if checkpoints is not None and (_due(result.steps, plan.checkpoint_every)
                                        or result.stop_reason == "early_stopping"):
            checkpoints.save(result.steps)
    result.tokens_per_second = clock.steady_rate()
    result.compile_seconds, result.warmup_seconds = clock.compile_seconds, clock.warmup_seconds
    result.train_seconds = clock.seconds
    return result


def _due(step: int, every: int | None) -> bool:
    return bool(every) and step % every == 0


def _early_stopping(trainer: Trainer, loss: float | None, plan: Plan) -> bool:
    """Update the best eval loss; True when patience has run out."""
    if plan.patience is None or loss is None:
        return False
    state = trainer.state
    if loss < float(state.best_eval_loss.numpy()) - plan.min_delta:
        state.best_eval_loss.assign(loss)
        state.evals_without_improvement.assign(0)
        return False
    state.evals_without_improvement.assign_add(1)
    return int(state.evals_without_improvement.numpy()) >= plan.patience


def _divergence_message(out: dict, step: int, checkpoints: Checkpoints | None) -> str:
    what = (f"training loss is {float(out['loss'])}" if not math.isfinite(out["loss"])
            else f"gradient norm is {float(out['grad_norm'])}")
    message = (f"{what} at step {step} (learning rate {float(out['learning_rate']):.3g}); "
               "that update was not applied. ")
    latest = checkpoints.latest() if checkpoints is not None else None
    if latest is None:
        return message + "No checkpoint was written before it."
    return (message + f"The last good checkpoint (step {step_of(latest)}) is kept in "
            f"{checkpoints.directory}.")


class _Clock:
    """Time spent inside compiled calls: the first call, the warm-up, the steady state.

    Args:
        tokens_per_step: token positions per step.
    """

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.calls = 0
        self.steps = 0
        self.seconds = 0.0
        self.compile_seconds = self.warmup_seconds = None
        self._steady = [0, 0.0]

    def add(self, steps: int, seconds: float) -> None:
        """Record a compiled call that took `steps` steps in `seconds`."""
        self.calls += 1
        self.steps += steps
        self.seconds += seconds
        if self.calls == 1:
            self.compile_seconds = seconds
        if self.calls <= WARMUP_CALLS:
            self.warmup_seconds = self.seconds
        else:
            self._steady[0] += steps
            self._steady[1] += seconds

    def rate_since(self, mark: tuple[int, float]) -> float:
        """Tokens/s over the calls since `mark` (steps, seconds)."""
        steps, seconds = self.steps - mark[0], self.seconds - mark[1]
        return steps * self.tokens_per_step / seconds if seconds > 0 else 0.0

    def steady_rate(self) -> float | None:
        """Tokens/s after the warm-up calls; None if there were none after them."""
        steps, seconds = self._steady
        return steps * self.tokens_per_step / seconds if steps else None
