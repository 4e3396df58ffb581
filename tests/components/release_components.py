"""Upstream components for running the release gate through the local runner.

`data` writes eval examples and eval documents; `train` exports the bigram model of
`tests.lm_fixtures` whose table is picked by `train.seed`. With the real `evaluate` and
`push` after them, a test drives the gate as `lmpipe run` does, without training a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from components import evaluate, push
from pipeline.core.component import ComponentSpec
from pipeline.dag import Node
from tests import lm_fixtures as lm

SHARPNESS = 1.0
RECORDS = 90
DATA = ComponentSpec(name="data", module=__name__, inputs={},
                     outputs={"examples": "Examples", "documents": "Documents"},
                     config=("transform",))
TRAIN = ComponentSpec(name="train", module=__name__, inputs={"examples": "Examples"},
                      outputs={"model": "Model"}, config=("train",))

DOCUMENTS = [
    {"text": "Return the square root of x as a float number please.", "domain": "math"},
    {"text": "Remove the file at the given path and return nothing at all.", "domain": "os"},
]


def records(sequence_length: int) -> list[dict]:
    """The eval windows `data` writes."""
    return lm.make_records(RECORDS, sequence_length, seed=11, domains=("math", "os"))


def nodes() -> list[Node]:
    model, examples = ("train", "model"), ("data", "examples")
    return [Node(DATA), Node(TRAIN, {"examples": examples}),
            Node(evaluate.SPEC, {"model": model, "examples": examples,
                                 "documents": ("data", "documents")}),
            Node(push.SPEC, {"model": model, "blessing": ("evaluate", "blessing")})]


def run(inputs, outputs, runtime, **sections):
    if "transform" in sections:
        length = sections["transform"].sequence_length
        lm.write_examples(Path(outputs["examples"]), records(length), length)
        lm.write_documents(Path(outputs["documents"]), DOCUMENTS)
        return {}
    spec = json.loads((Path(inputs["examples"].uri) / "feature_spec.json").read_text())
    lm.write_bigram_model(Path(outputs["model"]), seed=sections["train"].seed,
                          sequence_length=spec["sequence_length"], sharpness=SHARPNESS)
    return {}
