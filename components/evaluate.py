"""evaluate (TFX Evaluator): model + eval TFRecords (+ model in service) -> metrics, blessing."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="evaluate",
    module="components.evaluate",
    inputs={"model": "Model", "examples": "Examples"},
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
    config=("evaluation",),
)


def run(inputs, outputs, runtime, evaluation):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
