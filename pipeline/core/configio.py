"""Reading, overriding, validating and printing the config tree.

The schema is the dataclass tree in `pipeline.core.config`; this module turns YAML into it and
back. Every problem becomes a `ConfigError` that names the dotted key and what was
expected, so the CLI can print one line and exit with status 2.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.core.errors import ConfigError, UsageError


# The largest config file read: a config is a few kB, and /dev/zero or a log file passed
# by mistake must not fill the memory.
MAX_CONFIG_BYTES = 16 * 2**20
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`) and
    refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue  # `<<: *defaults` may override, as YAML intends
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class says so with its position
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


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
    except RecursionError:
        raise UsageError(f"{source}: invalid YAML: nested too deeply") from None
    except ValueError as err:
        # A scalar's own constructor refused it: an integer over Python's 4300-digit
        # limit, a date such as 2024-13-45 (quote it to make it a string).
        reason = str(err).splitlines()[0].split(";")[0]
        raise UsageError(f"{source}: invalid YAML: {reason}") from None


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file, naming the file in any error."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise UsageError(f"{path}: over {MAX_CONFIG_BYTES // 2**20} MB, not a config file")
        text = data.decode("utf-8")
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
    # deepcopy keeps shared and cyclic YAML aliases shared, where a naive copy would
    # expand `&a [*b, *b, ...]` chains a billion-fold or recurse forever.
    try:
        result = copy.deepcopy(raw)
    except RecursionError:
        raise UsageError("config: nested too deeply") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not all(parts):
            raise UsageError(f"--set {item!r}: expected key.path=value")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: depth + 1]), "is a value, not a section")
            node = child
        node[parts[-1]] = parse_yaml(text, f"--set {key}")
    return result


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


# Bounded repr: a wrong value may be a huge or self-referencing YAML alias structure.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 4, 64, 64


def _show(value: Any) -> str:
    text = _REPR.repr(value)
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
        A validated `pipeline.core.config.LmpipeConfig`.
    """
    from pipeline.core.config import LmpipeConfig

    raw = read_yaml_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of sections at the top level")
    return build(LmpipeConfig, apply_overrides(raw, overrides or []))
