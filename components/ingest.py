"""ingest (TFX ExampleGen): raw text files -> cleaned documents split into train and eval."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="ingest",
    module="components.ingest",
    inputs={},
    outputs={"documents": "Documents"},
    config=("data",),
    resolvers={},  # "raw": matched input files with their fingerprint
)


def run(inputs, outputs, runtime, data):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
