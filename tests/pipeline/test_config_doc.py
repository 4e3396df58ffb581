"""The README's configuration reference is generated from the config tree and stays in step."""

from __future__ import annotations

from pipeline import config_doc
from pipeline.config import config_dataclass
from tests.conftest import REPO


@config_dataclass
class _Example:
    """A section.

    Attributes:
        alpha, beta: two keys that share a text
            which goes on here.
        gamma: the third.
    """

    alpha: int = 1
    beta: str = "b"
    gamma: tuple[str, ...] = ("x",)
    delta: bool = False


def test_attribute_blocks_give_each_key_its_text_continuations_included():
    docs = config_doc.attribute_docs(_Example)
    assert docs == {"alpha": "two keys that share a text which goes on here.",
                    "beta": "two keys that share a text which goes on here.",
                    "gamma": "the third."}
    rows = config_doc.section_rows(_Example, "example")
    assert rows == [("example.alpha", "1", docs["alpha"]), ("example.beta", "b", docs["beta"]),
                    ("example.gamma", "[x]", "the third."), ("example.delta", "false", "")]


def test_every_config_key_is_documented():
    assert config_doc.undocumented() == []


def test_readme_holds_the_current_reference():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert config_doc.readme_block(readme) == config_doc.reference(), (
        "README.md's configuration reference is stale: run `python -m pipeline.config_doc --write`")
