"""The one function that wires the pipeline's components into a DAG.

Every runner (local, kfp.local, Vertex) executes the nodes this returns, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components import evaluate, ingest, push, tokenizer, train, transform, tune
from pipeline.component import ComponentSpec


@dataclass(frozen=True)
class Node:
    """One component in the DAG.

    Attributes:
        spec: the component.
        wiring: input name -> (upstream component, its output name).
        enabled: False when config switches the component off (it is then `skipped`).
    """

    spec: ComponentSpec
    wiring: dict[str, tuple[str, str]] = field(default_factory=dict)
    enabled: bool = True

    @property
    def name(self) -> str:
        return self.spec.name


def create_pipeline(config) -> list[Node]:
    """The pipeline's nodes in a valid execution order.

    Args:
        config: the resolved `LmpipeConfig`.

    Returns:
        The nodes, each with its input wiring.
    """
    examples = ("transform", "examples")
    tokenizer_model = ("tokenizer", "tokenizer")
    model = ("train", "model")
    return [
        Node(ingest.SPEC),
        Node(tokenizer.SPEC, {"documents": ("ingest", "documents")}),
        Node(transform.SPEC, {"documents": ("ingest", "documents"), "tokenizer": tokenizer_model}),
        Node(tune.SPEC, {"examples": examples, "tokenizer": tokenizer_model},
             enabled=config.tuning.enabled),
        Node(train.SPEC, {"examples": examples, "tokenizer": tokenizer_model,
                          "hyperparameters": ("tune", "hyperparameters")}),
        Node(evaluate.SPEC, {"model": model, "examples": examples,
                             "documents": ("ingest", "documents"), "tokenizer": tokenizer_model}),
        Node(push.SPEC, {"model": model, "blessing": ("evaluate", "blessing")}),
    ]


def component_names() -> list[str]:
    """The names of all components, in DAG order (no config needed)."""
    return [spec.name for spec in (ingest.SPEC, tokenizer.SPEC, transform.SPEC, tune.SPEC,
                                   train.SPEC, evaluate.SPEC, push.SPEC)]
