"""Token budgets: trials are compared at an equal number of training tokens, not steps.

A trial with batch size B and sequence length L takes `ceil(tokens / (B * L))` steps, so
every trial reads its token budget to within one batch, and a larger batch gets fewer
steps instead of more data.

Hyperband thinks in epochs. Here its unit is `tokens_per_trial / max_units` tokens: a
trial asked for `tuner/epochs = e` trains until the model has seen `e` units; one promoted
with `tuner/initial_epoch = e0` continues its parent's run (weights, optimizer state, data
position) from `e0` units. All rungs share one learning-rate schedule over the full
`tokens_per_trial`, so a promoted trial is exactly the longer run its parent started.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EPOCHS = "tuner/epochs"
INITIAL_EPOCH = "tuner/initial_epoch"
PARENT = "tuner/trial_id"


@dataclass(frozen=True)
class TrialPlan:
    """The steps of one trial.

    Attributes:
        tokens_per_step: batch size x sequence length.
        schedule_steps: the learning-rate schedule's length (the full budget).
        start_step: where the trial starts (its parent's stop step; 0 when fresh).
        stop_step: where it stops.
        units: Hyperband units the model has seen at the stop (max_units when full).
        start_units: units its parent had trained.
        parent: the trial it continues (Hyperband), or None.
    """

    tokens_per_step: int
    schedule_steps: int
    start_step: int
    stop_step: int
    units: int
    start_units: int
    parent: str | None

    @property
    def tokens(self) -> int:
        """Tokens this trial trains on (beyond its parent's)."""
        return (self.stop_step - self.start_step) * self.tokens_per_step

    @property
    def model_tokens(self) -> int:
        """Tokens the model has seen at the stop, its parent's included."""
        return self.stop_step * self.tokens_per_step


@dataclass(frozen=True)
class TokenBudget:
    """A sweep's budget.

    Attributes:
        tokens_per_trial: a full trial's tokens.
        max_units: the units a full trial is divided into (1 unless Hyperband).
    """

    tokens_per_trial: int
    max_units: int = 1

    def steps(self, units: int, tokens_per_step: int) -> int:
        """Steps that reach `units` units at `tokens_per_step` (ceil: at most one batch over)."""
        return -(-units * self.tokens_per_trial // (self.max_units * tokens_per_step))

    def plan(self, values: dict, batch_size: int, sequence_length: int) -> TrialPlan:
        """The steps of the trial with these hyperparameter values.

        Args:
            values: the trial's values (Hyperband's `tuner/*` entries included).
            batch_size: its batch size.
            sequence_length: tokens per example.

        Returns:
            Its `TrialPlan`.
        """
        per_step = batch_size * sequence_length
        units = int(values.get(EPOCHS, self.max_units))
        start_units = int(values.get(INITIAL_EPOCH, 0))
        parent = values.get(PARENT)
        return TrialPlan(tokens_per_step=per_step,
                         schedule_steps=self.steps(self.max_units, per_step),
                         start_step=self.steps(start_units, per_step) if parent else 0,
                         stop_step=self.steps(units, per_step), units=units,
                         start_units=start_units if parent else 0, parent=parent)


def default_tokens(train_config, sequence_length: int) -> int:
    """The training run's own token budget (`train.steps` and/or `train.max_tokens`)."""
    options = []
    if train_config.steps is not None:
        options.append(train_config.steps * train_config.batch_size * sequence_length)
    if train_config.max_tokens is not None:
        options.append(train_config.max_tokens)
    return min(options)


def hyperband_trials(max_units: int, factor: int, iterations: int) -> int:
    """How many trials KerasTuner's Hyperband schedules (its own bracket arithmetic).

    Args:
        max_units: its `max_epochs`.
        factor: its reduction factor.
        iterations: its `hyperband_iterations`.

    Returns:
        The number of trials of all brackets of all iterations.
    """
    return sum(bracket_trials(max_units, factor)) * iterations


def bracket_trials(max_units: int, factor: int) -> list[int]:
    """The trials of each bracket of one Hyperband iteration, in the order KerasTuner runs
    them: the most aggressive bracket (most configurations at one unit) first."""
    brackets, epochs = 0, max_units
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    last_size = math.ceil(1 + math.log(max_units, factor))
    sizes = []
    for bracket in reversed(range(brackets)):
        end = last_size / (bracket + 1)
        sizes.append(sum(math.ceil(end * factor ** (bracket - r)) for r in range(bracket + 1)))
    return sizes
