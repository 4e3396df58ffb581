"""tokenizer (TFX Transform, analyze phase): train documents -> a trained tokenizer."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="tokenizer",
    module="components.tokenizer",
    inputs={"documents": "Documents"},
    outputs={"tokenizer": "Tokenizer"},
    config=("tokenizer",),
)


def run(inputs, outputs, runtime, tokenizer):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
