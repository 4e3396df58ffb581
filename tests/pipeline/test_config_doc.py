"""The README's configuration reference is generated from the config tree and stays in step."""

from __future__ import annotations

import dataclasses

from pipeline import config_doc
from pipeline.config import config_dataclass
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
