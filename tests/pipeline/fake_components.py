"""Three cheap components wired like the real ones, for testing the runner itself.

Each execution appends its name to `<root>/calls.log`, so tests can see exactly what ran.
`gamma` fails half-way through writing its output when `train.seed` is 13, and is
interrupted there (Ctrl-C, or SIGTERM through the CLI) when it is 15.
"""

from __future__ import annotations

import json
import os

from pipeline.core.component import ComponentSpec
from pipeline.dag import Node

ALPHA = ComponentSpec(name="alpha", module=__name__, inputs={}, outputs={"out": "Thing"},
                      config=("data",))
BETA = ComponentSpec(name="beta", module=__name__, inputs={"thing": "Thing"},
                     outputs={"out": "Thing"}, config=("tokenizer",))
GAMMA = ComponentSpec(name="gamma", module=__name__, inputs={"thing": "Thing"},
                      outputs={"out": "Thing", "extra": "Thing"}, config=("train",))


def nodes() -> list[Node]:
    return [Node(ALPHA), Node(BETA, {"thing": ("alpha", "out")}),
            Node(GAMMA, {"thing": ("beta", "out")})]


def run(inputs, outputs, runtime, **sections):
    name = {("data",): "alpha", ("tokenizer",): "beta", ("train",): "gamma"}[tuple(sections)]
    with open(os.path.join(runtime.root, "calls.log"), "a", encoding="utf-8") as f:
        f.write(name + "\n")
    upstream = ""
    if "thing" in inputs:
        with open(os.path.join(inputs["thing"].uri, "value.txt"), encoding="utf-8") as f:
            upstream = f.read()
    with open(os.path.join(outputs["out"], "value.txt"), "w", encoding="utf-8") as f:
        f.write(upstream + name)
    if name == "gamma" and sections["train"].seed == 13:
        raise RuntimeError("gamma failed half-way")
    if name == "gamma" and sections["train"].seed == 15:
        raise KeyboardInterrupt
    if "extra" in outputs:
        with open(os.path.join(outputs["extra"], "sections.json"), "w", encoding="utf-8") as f:
            json.dump({k: v.seed for k, v in sections.items()}, f)
    return {"out": {"name": name}}


def summary(outputs):
    return {"train_tokens_per_second": 1.0} if "extra" in outputs else {}


def create_pipeline(config) -> list[Node]:
    """`nodes()` in the shape of `pipeline.dag.create_pipeline` (kfp.local tasks import it by name)."""
    return nodes()
