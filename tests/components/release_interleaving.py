"""Nodes that break into the release gate of `release_components`' DAG (issue 21):

- `OTHER_RUN`: between evaluate and push, another run (another root, the same serving
  directory) runs to its end, as a cron job would while this run was evaluating;
- `KILLED_PUSH`: the real push, then an interrupt before the runner records it, as when
  the process is killed between the rename of the new version and the record.
"""

from __future__ import annotations

from components import push
from pipeline.core.component import ComponentSpec
from pipeline.dag import Node
from tests.components import release_components

OTHER_RUN = ComponentSpec(name="other_run", module=__name__,
                          inputs={"blessing": "ModelBlessing"}, outputs={}, config=("pipeline",))
KILLED_PUSH = ComponentSpec(name="push", module=__name__, inputs=push.SPEC.inputs,
                            outputs=push.SPEC.outputs, config=("push",))
# The (config, nodes) of the run that OTHER_RUN runs; the test sets it.
OTHER: list = []


def nodes(extra: str) -> list[Node]:
    """The release gate's DAG with `other_run` before push, or with `killed_push`."""
    *upstream, push_node = release_components.nodes()
    if extra == "other_run":
        return [*upstream, Node(OTHER_RUN, {"blessing": ("evaluate", "blessing")}), push_node]
    return [*upstream, Node(KILLED_PUSH, push_node.wiring)]


def run(inputs, outputs, runtime, **sections):
    if "push" in sections:
        push.run(inputs, outputs, runtime, **sections)
        raise KeyboardInterrupt("killed between the push's rename and its record")
    from pipeline.local_runner import run_pipeline

    config, other_nodes = OTHER[-1]
    run_pipeline(config, nodes=other_nodes)
    return {}
