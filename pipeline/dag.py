"""The one function that wires the pipeline's components into a DAG.

Every runner (local, kfp.local, Vertex) executes the nodes this returns, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components import evaluate, ingest, labels, push, tokenizer, train, transform, tune
from components.evaluate import task as task_evaluate
from components.transform import task as task_transform
from components.tokenizer import pretrained as pretrained_tokenizer
from pipeline.core.component import ComponentSpec


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
    if config.task.type != "lm":
        return _task_pipeline(config)
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


def _task_pipeline(config) -> list[Node]:
    """The DAG of a fine-tuning task (`task.type` classification or text_to_text).

    A classifier's labels get their own analyze step (`labels`), whose vocabulary the
    transform applies; the tokenizer is imported from the pretrained model when there is
    one (`task.tokenizer`, else `train.warm_start`), so that its ids mean what they meant
    in pre-training; the transform and evaluate nodes are the tasks' own modules.
    """
    documents = ("ingest", "documents")
    tokenizer_model = ("tokenizer", "tokenizer")
    examples = ("transform", "examples")
    model = ("train", "model")
    classification = config.task.type == "classification"
    nodes = [Node(ingest.SPEC)]
    if classification:
        nodes.append(Node(labels.SPEC, {"documents": documents}))
    if pretrained_tokenizer.requested_source(config) is not None:
        nodes.append(Node(tokenizer.SPEC))
    else:
        nodes.append(Node(tokenizer.SPEC, {"documents": documents}))
    transform_inputs = {"documents": documents, "tokenizer": tokenizer_model}
    if classification:
        transform_inputs["labels"] = ("labels", "labels")
    return nodes + [
        Node(task_transform.SPEC, transform_inputs),
        Node(train.SPEC, {"examples": examples, "tokenizer": tokenizer_model}),
        Node(task_evaluate.SPEC, {"model": model, "examples": examples,
                                  "tokenizer": tokenizer_model,
                                  "statistics": ("transform", "statistics")}),
        Node(push.SPEC, {"model": model, "blessing": ("evaluate", "blessing")}),
    ]

