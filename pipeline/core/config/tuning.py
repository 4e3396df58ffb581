"""`tuning`: the search space, the budget and the cross-section checks of a sweep."""

from __future__ import annotations

import typing
from dataclasses import field, fields
from typing import Literal

from pipeline.core.config.checks import config_dataclass, require, require_positive
from pipeline.core.config.train import TrainConfig


@config_dataclass
class FloatRange:
    """A continuous hyperparameter: sampled between `min` and `max` (inclusive).

    Attributes:
        min, max: the bounds.
        sampling: `log` (log-uniform: every decade equally likely; needs min > 0) or `linear`.
    """

    min: float
    max: float
    sampling: Literal["log", "linear"] = "log"

    def __post_init__(self):
        require(self.sampling != "log" or self.min > 0, "min",
                f"must be > 0 for log sampling, got {self.min}")
        require(self.max > self.min, "max", f"must be above min ({self.min}), got {self.max}")


def _default_learning_rates() -> FloatRange:
    return FloatRange(min=1e-4, max=1e-2)


@config_dataclass
class SearchSpaceConfig:
    """What `tune` searches over (`tuning.space`); a key set to null is not tuned and keeps
    its `train.*` / `model.*` value, and so is one left out, except `learning_rate` and
    `batch_size`, which are tuned over their defaults unless set to null. Choices are
    lists; ranges are {min, max, sampling}.

    Attributes:
        learning_rate: `train.learning_rate`, a range (log-uniform by default).
        batch_size: `train.batch_size` choices (trials still see equal token budgets).
        warmup_steps: `train.warmup_steps` choices.
        weight_decay: `train.weight_decay`, a range.
        optimizer: `train.optimizer` choices.
        num_layers: `model.num_layers` choices.
        hidden_dim: `model.hidden_dim` choices.
    """

    learning_rate: FloatRange | None = field(default_factory=_default_learning_rates)
    batch_size: tuple[int, ...] | None = (16, 32, 64)
    warmup_steps: tuple[int, ...] | None = None
    weight_decay: FloatRange | None = None
    optimizer: tuple[str, ...] | None = None
    num_layers: tuple[int, ...] | None = None
    hidden_dim: tuple[int, ...] | None = None

    def __post_init__(self):
        optimizers = typing.get_args(typing.get_type_hints(TrainConfig)["optimizer"])
        valid = {"batch_size": (lambda v: v > 0, "must be > 0"),
                 "warmup_steps": (lambda v: v >= 0, "must be >= 0"),
                 "optimizer": (lambda v: v in optimizers, "must be among " + ", ".join(optimizers)),
                 "num_layers": (lambda v: v > 0, "must be > 0"),
                 "hidden_dim": (lambda v: v > 0, "must be > 0")}
        for name, (check, expected) in valid.items():
            choices = getattr(self, name)
            if choices is None:
                continue
            require(len(choices) > 0, name, "needs at least one choice (or null: not tuned)")
            require(len(set(choices)) == len(choices), name,
                    f"must not repeat a choice, got {list(choices)}")
            require(all(map(check, choices)), name, f"choices {expected}, got {list(choices)}")
        lr, decay = self.learning_rate, self.weight_decay
        require(lr is None or lr.min > 0, "learning_rate.min", f"must be > 0, got {lr and lr.min}")
        require(decay is None or decay.min >= 0, "weight_decay.min",
                f"must be >= 0, got {decay and decay.min}")


@config_dataclass
class HyperbandConfig:
    """Hyperband's schedule (`tuning.algorithm: hyperband`), in token units.

    Attributes:
        max_units: KerasTuner's `max_epochs`, counted in units of
            `tuning.tokens_per_trial / max_units` tokens: a configuration trained to the
            end gets `tokens_per_trial`, the first rung of the most aggressive bracket one unit.
        factor: KerasTuner's reduction factor (a third go on at factor 3).
        iterations: KerasTuner's `hyperband_iterations` (full passes over the brackets).
    """

    max_units: int = 27
    factor: int = 3
    iterations: int = 1

    def __post_init__(self):
        require_positive(self, "max_units", "iterations")
        require(self.factor >= 2, "factor", f"must be >= 2, got {self.factor}")


@config_dataclass
class TuningConfig:
    """The `tune` component's sweep (`components/tune/__init__.py`, `tuning/`; docs/tuning.md).

    Attributes:
        enabled: run `tune` in the pipeline; `train` then takes the best values.
        algorithm: `random`, `bayesian` (Gaussian process) or `hyperband`.
        sampler: how new configurations are drawn (random search's trials, Hyperband's
            and the Bayesian oracle's initial ones): `quasi_random` (a scrambled Halton
            sequence, which spreads any number of them evenly over the space:
            `tuning/quasi_random.py`) or `random` (KerasTuner's independent draws).
        max_trials: the most trials; raising it continues the same sweep. It caps
            Hyperband too (`tune` warns when it stops Hyperband's brackets short).
        objective: what trials are ranked by, on the eval split: `eval_loss` (mean token
            NLL, nats) or `eval_perplexity`.
        tokens_per_trial: every trial's training budget in tokens (batch size x sequence
            length x steps, to within one batch), whatever its batch size; None: the
            training run's own budget.
        max_consecutive_failed_trials: stop the sweep after this many failures in a row.
        reclaim_after_seconds: parallel tuning: a trial whose worker has not reported for
            this long (a worker reports every quarter of it, at most every minute, while
            it runs a trial) is handed to the next worker that asks, from its start; a
            worker that died would hold it, and the chief wait for it, for ever.
        chief_wait_seconds: parallel tuning: how long a worker waits for the chief,
            first for the upstream results in the cache, then for each answer of its
            oracle, before it stops with an error naming the address (KerasTuner's own
            wait is an hour: the chief may be starting, or training a large batch).
        seed: the search's seed (KerasTuner reads 0 as "no seed", so >= 1): the
            quasi-random sequence's scrambling; under `sampler: random` KerasTuner seeds
            draw i with seed + i, so use seeds far apart for independent sweeps.
        space: the search space (`SearchSpaceConfig`).
        hyperband: Hyperband's budget schedule (`HyperbandConfig`).
    """

    enabled: bool = False
    algorithm: Literal["random", "bayesian", "hyperband"] = "random"
    sampler: Literal["random", "quasi_random"] = "quasi_random"
    max_trials: int = 10
    objective: Literal["eval_loss", "eval_perplexity"] = "eval_loss"
    tokens_per_trial: int | None = None
    max_consecutive_failed_trials: int = 3
    reclaim_after_seconds: float = 600.0
    chief_wait_seconds: float = 3600.0
    seed: int = 1
    space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    hyperband: HyperbandConfig = field(default_factory=HyperbandConfig)

    def __post_init__(self):
        require_positive(self, "max_trials", "tokens_per_trial", "max_consecutive_failed_trials",
                         "reclaim_after_seconds", "chief_wait_seconds")
        require(self.seed >= 1, "seed", f"must be >= 1 (KerasTuner takes 0 as no seed), "
                f"got {self.seed}")
        names = [f.name for f in fields(self.space)]
        require(any(getattr(self.space, name) is not None for name in names), "space",
                "tunes nothing: give at least one of " + ", ".join(names))


def check_tuning(config) -> None:
    """Cross-section checks of an enabled sweep: every choice must make a valid run.

    Args:
        config: the `LmpipeConfig` being built.
    """
    if config.tuning.enabled:
        _check_tuning_choices(config.tuning.space, config.train, config.model)
        _check_tuning_budget(config.tuning, config.train, config.transform.sequence_length)


def _check_tuning_choices(space, train, model) -> None:
    for size in space.batch_size or ():
        require(size % train.grad_accum_steps == 0, "tuning.space.batch_size",
                f"choices must be multiples of train.grad_accum_steps "
                f"({train.grad_accum_steps}), got {size}")
    for width in space.hidden_dim or ():
        require(width % model.num_heads == 0, "tuning.space.hidden_dim",
                f"choices must be multiples of model.num_heads ({model.num_heads}), got {width}")
        require(model.family != "llama" or (width // model.num_heads) % 2 == 0,
                "tuning.space.hidden_dim", f"choices must give llama an even head dim, "
                f"got {width} / {model.num_heads} heads")


def _check_tuning_budget(tuning, train, length: int) -> None:
    """Every batch size must get more steps than the warm-up, and Hyperband's smallest
    rung at least one batch (else the budgets are not equal to within a batch)."""
    space = tuning.space
    # None: the training run's own budget (tuning/budget.py `default_tokens`).
    budgets = [train.max_tokens] if train.max_tokens is not None else []
    if train.steps is not None:
        budgets.append(train.steps * train.batch_size * length)
    tokens = tuning.tokens_per_trial or min(budgets)
    shown = tuning.tokens_per_trial or f"null (the training run's {tokens} tokens)"
    sizes = space.batch_size or (train.batch_size,)
    warmup = max(space.warmup_steps or (train.warmup_steps,))
    for size in sizes:
        steps = -(-tokens // (size * length))
        require(steps > warmup, "tuning.tokens_per_trial",
                f"gives batch size {size} only {steps} steps at sequence length {length}, "
                f"not more than the warm-up ({warmup} steps); got {shown}")
    if tuning.algorithm == "hyperband":
        unit = tokens / tuning.hyperband.max_units
        require(unit >= max(sizes) * length, "tuning.tokens_per_trial",
                f"must give each Hyperband unit (tokens_per_trial / hyperband.max_units = "
                f"{unit:,.0f} tokens) at least one batch of the largest batch size "
                f"({max(sizes)} x {length} tokens); got {shown}")
