"""What every config section shares: the frozen dataclass form and the checks that name a key."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.errors import ConfigError

config_dataclass = dataclass(frozen=True, kw_only=True)


def require(condition: bool, key: str, expected: str) -> None:
    """Raise a `ConfigError` for `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(key, expected)


def require_positive(section: object, *names: str) -> None:
    """Each named int/float field of `section` must be > 0."""
    for name in names:
        value = getattr(section, name)
        require(value is None or value > 0, name, f"must be > 0, got {value}")


# TensorFlow reads the path of a checkpoint or SavedModel it loads as a pattern (`run[1]`
# would mean `run1`), so a path models are saved under and loaded from must not hold these.
PATTERN_CHARACTERS = "*?["


def require_plain_path(section: object, *names: str) -> None:
    """Each named path field of `section` must hold no wildcard character."""
    for name in names:
        value = getattr(section, name)
        require(value is None or not any(c in value for c in PATTERN_CHARACTERS), name,
                "must not hold *, ? or [ (TensorFlow reads a model's path as a pattern), "
                f"got {value!r}")
