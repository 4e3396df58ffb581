"""The README's configuration reference is generated from the config tree and stays in step."""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing

from pipeline import config_doc
from pipeline.core.config import LmpipeConfig, config_dataclass
from pipeline.core.configio import build, parse_yaml, to_dict
from pipeline.core.errors import ConfigError
from tests.conftest import REPO


@config_dataclass
class _Span:
    """A value with a required field, like `FloatRange`.

    Attributes:
        low, high: the bounds.
    """

    low: int
    high: int = 2


@config_dataclass
class _Example:
    """A section.

    Attributes:
        alpha, beta: two keys that share a text
            which goes on here.
        gamma: the third;
            None: a continuation that reads like an entry.
        span: a value of its own type, shown whole.
    """

    alpha: int = 1
    beta: str = "b"
    gamma: tuple[str, ...] = ("x",)
    delta: bool = False
    span: _Span = dataclasses.field(default_factory=lambda: _Span(low=1))


def test_attribute_blocks_give_each_key_its_text_continuations_included():
    docs = config_doc.attribute_docs(_Example)
    assert docs == {"alpha": "two keys that share a text which goes on here.",
                    "beta": "two keys that share a text which goes on here.",
                    "gamma": "the third; None: a continuation that reads like an entry.",
                    "span": "a value of its own type, shown whole."}
    rows = config_doc.section_rows(_Example, "example")
    assert rows == [("example.alpha", "1", docs["alpha"]), ("example.beta", "b", docs["beta"]),
                    ("example.gamma", "[x]", docs["gamma"]), ("example.delta", "false", ""),
                    ("example.span", "{low: 1, high: 2}", docs["span"])]


def test_every_config_key_is_documented():
    assert config_doc.undocumented() == []


def test_readme_holds_the_current_reference():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert config_doc.readme_block(readme) == config_doc.reference(), (
        "README.md's configuration reference is stale: run `python -m pipeline.config_doc --write`")


# --- the key tables and key names in README.md and docs/*.md ---

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MINIMAL = {"data": {"inputs": ["corpus/*.jsonl"]}}
REQUIRED = object()


def _config_keys() -> dict[str, str]:
    """Every dotted config key -> its default as the reference shows it."""
    return {key: default for name, cls in config_doc._sections().items()
            for key, default, _ in config_doc.section_rows(cls, name)}


def _resolve(names: list[str], prefix: str | None, sections: set[str]) -> list[str]:
    """Dotted keys for a table row's key cell: a name outside a section is under the
    heading's `section.*`, and a later bare name is a sibling of the first (`a.b`, `c`)."""
    keys = []
    for name in names:
        if name.split(".")[0] in sections:
            keys.append(name)
        elif keys:
            keys.append(keys[0].rsplit(".", 1)[0] + "." + name)
        else:
            assert prefix, f"`{name}`: a key outside a section, under no `section.*` heading"
            keys.append(f"{prefix}.{name}")
    return keys


def _default_values(cell: str, count: int) -> list:
    """The stated defaults of a row: backticked YAML values, else a word (`none`, `unset`:
    null; `(required)`: no default)."""
    values = re.findall(r"`([^`]*)`", cell)
    if not values:
        word = cell.strip().lower()
        assert word in ("none", "unset", "(required)"), f"unreadable default {cell!r}"
        value = REQUIRED if word == "(required)" else None
        return [value] * count
    parsed = [REQUIRED if v == "required" else parse_yaml(v, "default") for v in values]
    assert len(parsed) in (1, count), f"{count} keys but defaults {cell!r}"
    return parsed * count if len(parsed) == 1 else parsed


def documented_defaults(path) -> list[tuple[str, object, str]]:
    """(dotted key, stated default, the row) for each row of a `| key | default |` table."""
    sections = set(config_doc._sections())
    rows, prefix, in_table = [], None, False
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#+ .*`(\w+)\.\*`", line)
        if heading:
            prefix = heading.group(1)
        if re.match(r"^\| key \| default \|", line):
            in_table = True
        elif in_table and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            keys = _resolve(re.findall(r"`([\w.]+)`", cells[0]), prefix, sections)
            rows += [(k, v, line) for k, v in zip(keys, _default_values(cells[1], len(keys)))]
        elif not line.startswith("|"):
            in_table = False
    return rows


def test_docs_key_tables_state_the_code_defaults():
    """Each documented default, set explicitly, gives the config the code builds without it;
    the README states every key's, and each page with a key table is read."""
    keys, plain = _config_keys(), to_dict(build(LmpipeConfig, MINIMAL))
    checked, wrong = {}, []
    for path in DOCS:
        for key, value, row in documented_defaults(path):
            checked.setdefault(path.name, set()).add(key)
            if key not in keys:
                wrong.append(f"{path.name}: `{key}` is no config key ({row})")
            elif value is REQUIRED:
                if keys[key] != "required":
                    wrong.append(f"{path.name}: `{key}` has a default, {keys[key]}")
            else:
                try:
                    built = to_dict(build(LmpipeConfig, _set(MINIMAL, key, value)))
                except ConfigError as err:
                    wrong.append(f"{path.name}: `{key}` = {value!r}: {err}")
                    continue
                if built != plain:
                    wrong.append(f"{path.name}: `{key}` default stated {value!r}, "
                                 f"the code's is {keys[key]}")
    assert wrong == []
    assert checked["README.md"] == set(keys)
    assert {"data.md", "tuning.md", "tasks.md", "compression.md"} <= set(checked)


def _set(raw: dict, key: str, value) -> dict:
    """`raw` with the dotted `key` set to `value` (a copy; sections merged)."""
    result = copy.deepcopy(raw)
    node = result
    for part in key.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[key.split(".")[-1]] = value
    return result


def _named_keys(text: str, sections: set[str]) -> set[str]:
    """Dotted config keys a page names: whole code spans (`train.steps`) and `--set` keys."""
    section = "|".join(sorted(sections))
    names = set(re.findall(rf"`((?:{section})\.[\w.]+)`", text))
    names |= set(re.findall(rf"--set ['\"]?((?:{section})\.[\w.]+)=", text))
    # A module (`pipeline.config_doc`) or a file (`pipeline.yaml`) is no key.
    return {n for n in names if not (REPO / (n.replace(".", "/") + ".py")).exists()
            and not re.search(r"\.(ya?ml|json|py|md)$", n)}


def test_every_key_the_docs_name_exists():
    keys = _config_keys()
    sections = set(config_doc._sections())
    unknown = []
    for path in DOCS:
        for name in sorted(_named_keys(path.read_text(encoding="utf-8"), sections)):
            parts = name.split(".")
            # a field of a key's value (`tuning.space.learning_rate.min`) or a sub-section
            if not any(".".join(parts[:i]) in keys for i in range(2, len(parts) + 1)) \
                    and not any(key.startswith(name + ".") for key in keys):
                unknown.append(f"{path.name}: `{name}`")
    assert unknown == []


def _choices(cls: type, prefix: str) -> list[tuple[str, tuple, str]]:
    """(dotted key, its allowed values, its description) for every key typed `Literal`."""
    docs, hints, rows = config_doc.attribute_docs(cls), typing.get_type_hints(cls), []
    for field in dataclasses.fields(cls):
        hint, key = hints[field.name], f"{prefix}.{field.name}"
        if dataclasses.is_dataclass(hint) and not config_doc._is_value(hint):
            rows += _choices(hint, key)
            continue
        options = [a for a in typing.get_args(hint) if a is not type(None)] \
            if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
        for option in options:
            if typing.get_origin(option) is typing.Literal:
                rows.append((key, typing.get_args(option), docs.get(field.name, "")))
    return rows


def test_the_reference_names_every_choice_of_a_key():
    """`train.strategy: one_device` is in its description, as `one_device`."""
    rows = [row for name, cls in config_doc._sections().items() for row in _choices(cls, name)]
    assert {"train.strategy", "model.family", "tuning.algorithm"} <= {row[0] for row in rows}
    unnamed = [(key, value) for key, values, text in rows for value in values
               if f"`{value}`" not in text]
    assert unnamed == []
