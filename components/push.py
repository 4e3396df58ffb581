"""push (TFX Pusher): a blessed model -> a new version in the serving directory."""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="push",
    module="components.push",
    inputs={"model": "Model", "blessing": "ModelBlessing"},
    outputs={"pushed": "PushedModel"},
    config=("push",),
)


def run(inputs, outputs, runtime, push):
    raise NotImplementedError


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
