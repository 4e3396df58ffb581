"""tune (TFX Tuner): token TFRecords -> best hyperparameters, trial table and plot."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="tune",
    module="components.tune",
    inputs={"examples": "Examples", "tokenizer": "Tokenizer"},
    outputs={"hyperparameters": "Hyperparameters"},
    config=("model", "task", "train", "tuning"),
)


def run(inputs, outputs, runtime, model, task, train, tuning):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
