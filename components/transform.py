"""transform (TFX Transform, apply phase): documents + tokenizer -> packed token TFRecords."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="transform",
    module="components.transform",
    inputs={"documents": "Documents", "tokenizer": "Tokenizer"},
    outputs={"examples": "Examples", "statistics": "Statistics"},
    config=("transform",),
)


def run(inputs, outputs, runtime, transform):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
