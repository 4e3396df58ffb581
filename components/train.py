"""train (TFX Trainer): token TFRecords (+ tuned hyperparameters) -> a servable LM."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="train",
    module="components.train",
    inputs={"examples": "Examples", "tokenizer": "Tokenizer", "hyperparameters": "Hyperparameters"},
    outputs={"model": "Model"},
    config=("model", "task", "train"),
    optional_inputs=("hyperparameters",),
)


def run(inputs, outputs, runtime, model, task, train):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
