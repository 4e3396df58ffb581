"""The one function that wires the pipeline's components into a DAG.

Every runner (local, kfp.local, Vertex) executes the nodes this returns, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components import evaluate, ingest, labels, push, tokenizer, train, transform, tune, validate
from components.tokenizer import pretrained as pretrained_tokenizer
from pipeline.core.component import ComponentSpec


@dataclass(frozen=True)
class Node:
    """One component in the DAG.

    Attributes:
        spec: the component.
        wiring: input name -> (upstream component, its output name).
        enabled: False when config switches the component off (it is then `skipped`).
        after: components that must have succeeded first, though none of their outputs is
            an input here (train waits for the data validation, whose verdict must not
            enter train's cache key).
    """

    spec: ComponentSpec
    wiring: dict[str, tuple[str, str]] = field(default_factory=dict)
    enabled: bool = True
    after: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name


def create_pipeline(config) -> list[Node]:
    """The pipeline's nodes in a valid execution order.

    One DAG serves every `task.type`. A classifier's labels get their own analyze step
    (`labels`), whose vocabulary the transform applies. The tokenizer step copies the
    tokenizer of a pretrained model when a fine-tuning task names one (`task.tokenizer`,
    else `train.warm_start`), or of the checkpoint a run starts from (`train.init_from`),
    so that its ids mean what they meant in pre-training; it then reads no documents. A
    language model's evaluation takes prompts from the documents; a task's reads what the
    transform left out from its statistics. The golden eval set's documents go through the
    transform beside the corpus's, and `validate` checks the data before `tune` and `train`
    start (which wait for it without taking its outputs).

    Args:
        config: the resolved `LmpipeConfig`.

    Returns:
        The nodes, each with its input wiring.
    """
    documents = ("ingest", "documents")
    tokenizer_model = ("tokenizer", "tokenizer")
    examples = ("transform", "examples")
    model = ("train", "model")
    language_model = config.task.type == "lm"
    classification = config.task.type == "classification"
    copies_tokenizer = (pretrained_tokenizer.requested_source(config) is not None
                        or config.train.init_from is not None)  # the checkpoint's own
    transform_inputs = {"documents": documents, "tokenizer": tokenizer_model}
    evaluate_inputs = {"model": model, "examples": examples, "tokenizer": tokenizer_model}
    if classification:
        transform_inputs["labels"] = ("labels", "labels")
    if language_model:  # the golden eval set is packed with the eval split's rules
        transform_inputs["golden"] = ("ingest", "golden")
        evaluate_inputs["documents"] = documents
    else:
        evaluate_inputs["statistics"] = ("transform", "statistics")
    nodes = [Node(ingest.SPEC)]
    if classification:
        nodes.append(Node(labels.SPEC, {"documents": documents}))
    nodes += [Node(tokenizer.SPEC, {} if copies_tokenizer else {"documents": documents}),
              Node(transform.SPEC, transform_inputs),
              # the data validation stops a run with an anomaly before anything trains
              Node(validate.SPEC, {"span_statistics": ("transform", "statistics")})]
    if language_model:  # the tuner tunes language models only (the config refuses the rest)
        nodes.append(Node(tune.SPEC, {"examples": examples, "tokenizer": tokenizer_model},
                          enabled=config.tuning.enabled, after=("validate",)))
    train_inputs = {"examples": examples, "tokenizer": tokenizer_model}
    if language_model:
        train_inputs["hyperparameters"] = ("tune", "hyperparameters")
    evaluate_inputs["anomalies"] = ("validate", "anomalies")
    return nodes + [
        Node(train.SPEC, train_inputs, after=("validate",)),
        Node(evaluate.SPEC, evaluate_inputs),
        Node(push.SPEC, {"model": model, "blessing": ("evaluate", "blessing")}),
    ]
