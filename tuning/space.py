"""The search space as data: `tuning.space` -> KerasTuner hyperparameters -> config overrides.

A tuned hyperparameter is named by the config key it overrides (`train.learning_rate`,
`model.num_layers`), which is also its key
in the artifact's `best.json`, the format `components/train/hparams.py` reads. The
model builder never declares a hyperparameter: it reads the trial's values through
`trial_configs`.
"""

from __future__ import annotations

from pipeline.core.config import FloatRange
from pipeline.core.configio import build, to_dict
from pipeline.core.errors import ConfigError

# `tuning.space` field -> the config key it tunes, in table order.
PARAMETERS = {
    "learning_rate": "train.learning_rate",
    "batch_size": "train.batch_size",
    "warmup_steps": "train.warmup_steps",
    "weight_decay": "train.weight_decay",
    "optimizer": "train.optimizer",
    "num_layers": "model.num_layers",
    "hidden_dim": "model.hidden_dim",
}

# Values KerasTuner's Hyperband adds to a trial; they are budgets, not hyperparameters.
BUDGET_PREFIX = "tuner/"


def names(space) -> list[str]:
    """The config keys `space` tunes, in table order.

    Args:
        space: `pipeline.core.config.SearchSpaceConfig`.

    Returns:
        Dotted keys such as `train.learning_rate`.
    """
    return [key for field, key in PARAMETERS.items() if getattr(space, field) is not None]


def hyperparameters(space):
    """The KerasTuner search space of `space`.

    Args:
        space: `pipeline.core.config.SearchSpaceConfig`.

    Returns:
        A `keras_tuner.HyperParameters` with one entry per tuned key: ranges become
        `Float` (log or linear sampling), lists become `Choice`.
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for field, key in PARAMETERS.items():
        value = getattr(space, field)
        if value is None:
            continue
        if isinstance(value, FloatRange):
            hp.Float(key, min_value=value.min, max_value=value.max, sampling=value.sampling)
        else:
            hp.Choice(key, list(value))
    return hp


def tuned_values(values: dict) -> dict:
    """A trial's hyperparameter values without Hyperband's budget entries."""
    return {k: v for k, v in values.items() if not k.startswith(BUDGET_PREFIX)}


def trial_configs(values: dict, train_config, model_config, **train_settings):
    """The train and model sections one trial runs with.

    Args:
        values: the trial's hyperparameter values (config keys -> values).
        train_config: `TrainConfig` from the config.
        model_config: `ModelConfig` from the config.
        **train_settings: further `train.*` fields the sweep fixes for every trial.

    Returns:
        (train_config, model_config), validated like the config file.
    """
    sections = {"train": to_dict(train_config), "model": to_dict(model_config)}
    sections["train"].update(train_settings)
    for key, value in tuned_values(values).items():
        override(sections, key, value)
    return (build(type(train_config), sections["train"], "train"),
            build(type(model_config), sections["model"], "model"))


def override(sections: dict, key: str, value) -> None:
    """Set the field at dotted `key` (any depth: `train.distill.alpha`) in `sections`.

    Args:
        sections: section name -> the section as a dict (`configio.to_dict`), changed in place.
        key: the dotted config key of one field.
        value: its new value (validated later, when the section is built).

    Raises:
        ConfigError: `key` names no field of these sections, or a whole section.
    """
    *parents, name = key.split(".")
    node, path = sections, []
    for part in parents:
        path.append(part)
        child = node.get(part) if isinstance(node, dict) else None
        if child is None and isinstance(node, dict) and part in node:
            raise ConfigError(key, f"cannot be tuned: {'.'.join(path)} is null in the "
                                   "config; give it a value to tune its keys")
        if not isinstance(child, dict):
            raise ConfigError(key, f"cannot be tuned: {'.'.join(path)} is not a section "
                                   f"(tunable sections: {', '.join(sorted(sections))})")
        node = child
    if not parents:
        raise ConfigError(key, "cannot be tuned: expected a dotted key such as "
                               "train.learning_rate")
    if name not in node:
        raise ConfigError(key, f"cannot be tuned: no such key (known here: "
                               f"{', '.join(sorted(node))})")
    if isinstance(node[name], dict):
        raise ConfigError(key, "cannot be tuned: it is a section; tune one of its keys "
                               f"({', '.join(f'{key}.{k}' for k in sorted(node[name]))})")
    node[name] = value


def batch_size(values: dict, train_config) -> int:
    """The trial's batch size (tuned or the config's)."""
    return int(values.get(PARAMETERS["batch_size"], train_config.batch_size))
