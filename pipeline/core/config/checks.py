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
