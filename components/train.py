"""train (TFX Trainer): token TFRecords (+ tuned hyperparameters) -> a servable LM.

The work is in `components/training/run_fn.py`; this module stays cheap to import.
"""

from __future__ import annotations

import json
import os

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
    """Train the model on `inputs["examples"]` and write `outputs["model"]`.

    Args:
        inputs: `examples`, `tokenizer` and (optional, None when tune did not run)
            `hyperparameters` artifacts.
        outputs: `model` -> the directory to write the model artifact into.
        runtime: the run's `Runtime` (progress goes to `runtime.log`).
        model: `ModelConfig`.
        task: `TaskConfig`.
        train: `TrainConfig`.

    Returns:
        Properties of the model artifact.
    """
    from components.training.run_fn import run_fn

    hyperparameters = inputs.get("hyperparameters")
    summary = run_fn(inputs["examples"].uri, inputs["tokenizer"].uri,
                     hyperparameters.uri if hyperparameters else None, outputs["model"],
                     model, task, train, log=lambda line: runtime.log(f"[train] {line}"))
    return {"model": {"eval_loss": summary["eval_loss"],
                      "hyperparameters_source": summary["hyperparameters"]["source"]}}


def summary(outputs) -> dict:
    """Run-level metrics: steady-state training throughput from `train_summary.json`."""
    with open(os.path.join(outputs["model"].uri, "train_summary.json"), encoding="utf-8") as f:
        return {"train_tokens_per_second": json.load(f)["train_tokens_per_second"]}


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
