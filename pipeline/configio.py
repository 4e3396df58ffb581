"""Reading, overriding, validating and printing the config tree.

The schema is the dataclass tree in `pipeline.config`; this module turns YAML into it and
back. Every problem becomes a `ConfigError` that names the dotted key and what was
expected, so the CLI can print one line and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError, UsageError


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`)."""


_Loader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; a syntax error or an object-building tag is a `UsageError`.

    Args:
        text: the YAML document.
        source: what to call it in an error (a file name or `--set key`).

    Returns:
        The plain Python value (dicts, lists, scalars).
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" line {mark.line + 1} column {mark.column + 1}"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"{source}:{where} invalid YAML: {problem}") from None


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file, naming the file in any error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read config file ({err.__class__.__name__})") from None
    return parse_yaml(text, str(path))


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` overrides (values parsed as YAML) to a raw config dict.

    Args:
        raw: the parsed config file (not modified).
        overrides: strings such as `train.steps=200` or `data.inputs=["a/*.txt"]`.

    Returns:
        A new dict with the overrides applied.
    """
    result = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected key.path=value")
        key = key.strip()
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: depth + 1]), "is a value, not a section")
            node = child
        node[parts[-1]] = parse_yaml(text, f"--set {key}")
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def build(cls: type, raw: Any, path: str = "") -> Any:
    """Build the frozen dataclass `cls` from a raw dict, validating every field.

    Args:
        cls: a dataclass type of the config tree.
        raw: the parsed YAML for it (a dict, or None for all defaults).
        path: the dotted key of this section, for error messages.

    Returns:
        An instance of `cls`.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path or "<top level>", f"expected a mapping, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(_join(path, str(key)), f"unknown key (known here: {known})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "is required")
    try:
        return cls(**values)
    except ConfigError as err:
        raise err.under(path) from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, key)
        raise TypeError(f"unsupported union {hint} at {key}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"expected one of {', '.join(map(str, args))}, got {_show(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {_show(value)}")
        item_hint = args[0]
        return tuple(_convert(item_hint, item, f"{key}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {_show(value)}")
    if hint is int:
        # TensorFlow counts steps and seeds in int64: a larger value cannot be meant.
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
            return value
        raise ConfigError(key, f"expected an integer (int64), got {_show(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            return float(value)
        raise ConfigError(key, f"expected a finite number, got {_show(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {_show(value)}")
    raise TypeError(f"unsupported type {hint} at {key}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_dict(config: Any) -> Any:
    """The plain-data form of a config tree (tuples become lists), for YAML and hashing."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    return config


def dump_yaml(config: Any) -> str:
    """The config as YAML text, in field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)


def load_config(path: str | Path, overrides: list[str] | None = None):
    """Load the pipeline config from a YAML file plus `--set` overrides.

    Args:
        path: the YAML file.
        overrides: `key.path=value` strings.

    Returns:
        A validated `pipeline.config.LmpipeConfig`.
    """
    from pipeline.config import LmpipeConfig

    raw = read_yaml_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of sections at the top level")
    return build(LmpipeConfig, apply_overrides(raw, overrides or []))
