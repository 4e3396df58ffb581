"""A stand-in for ingest -> tokenizer -> transform in local-runner tests: it writes the
shared tiny tokenizer and examples artifacts (`tests.models.lm_data`) without Beam."""

from __future__ import annotations

from pathlib import Path

from components import tune
from pipeline.core.component import ComponentSpec
from pipeline.dag import Node

SPEC = ComponentSpec(name="transform", module=__name__, inputs={},
                     outputs={"examples": "Examples", "tokenizer": "Tokenizer"},
                     config=("transform",))


def run(inputs, outputs, runtime, transform):
    from tests.models import lm_data

    lm_data.write_tokenizer(Path(outputs["tokenizer"]))
    lm_data.write_examples(Path(outputs["examples"]), Path(outputs["tokenizer"]))
    return {}


def nodes() -> list[Node]:
    """This stand-in, then the real tune component."""
    return [Node(SPEC), Node(tune.SPEC, {"examples": ("transform", "examples"),
                                         "tokenizer": ("transform", "tokenizer")})]
