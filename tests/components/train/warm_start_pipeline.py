"""A small DAG around the real train and push components, for `train.warm_start:
latest_pushed` through the local runner: `data` writes the tokenizer and examples (their
window is `transform.sequence_length`, so changing it is new data), `bless` blesses
whatever model it gets."""

from __future__ import annotations

import json
from pathlib import Path

from components import push, train
from pipeline.core.component import ComponentSpec
from pipeline.dag import Node
from tests.models import lm_data

DATA = ComponentSpec(name="data", module=__name__, inputs={},
                     outputs={"examples": "Examples", "tokenizer": "Tokenizer"},
                     config=("transform",))
BLESS = ComponentSpec(name="bless", module=__name__, inputs={"model": "Model"},
                      outputs={"blessing": "ModelBlessing"}, config=())


def nodes() -> list[Node]:
    model = ("train", "model")
    return [Node(DATA),
            Node(train.SPEC, {"examples": ("data", "examples"),
                              "tokenizer": ("data", "tokenizer")}),
            Node(BLESS, {"model": model}),
            Node(push.SPEC, {"model": model, "blessing": ("bless", "blessing")})]


def run(inputs, outputs, runtime, **sections):
    if "transform" in sections:
        lm_data.write_tokenizer(Path(outputs["tokenizer"]))
        lm_data.write_examples(Path(outputs["examples"]), Path(outputs["tokenizer"]),
                               length=sections["transform"].sequence_length)
        return {}
    from pipeline.core.contracts import serving_dir

    digest = serving_dir.saved_model_digest(inputs["model"].path("saved_model"))
    (Path(outputs["blessing"]) / "blessing.json").write_text(json.dumps(
        {"blessed": True, "candidate": {"saved_model_sha256": digest}}))
    return {}
