"""What each kfp step runs: the component's entry point, its config, its artifact arguments.

A step receives the whole resolved config as `--config /dev/null --set SECTION=<json>`,
one `--set` per section, so the container needs no config file and `load_config` rebuilds
exactly the config that was compiled (JSON is YAML). Artifacts are `--input NAME=PATH` and
`--output NAME=PATH`, as in `lmpipe component`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Callable

from pipeline.core.configio import to_dict
from pipeline.core.errors import UsageError

DEFAULT_DAG = "pipeline.dag:create_pipeline"
# Sections only the orchestrator reads; components never see them.
ORCHESTRATOR_SECTIONS = ("vertex", "schedule")


@dataclass(frozen=True)
class Step:
    """One kfp step.

    Attributes:
        name: the component (also the step's name).
        inputs: input name -> (upstream step, its output name), for the inputs wired here.
        input_types: input name -> lmpipe artifact type.
        outputs: output name -> lmpipe artifact type.
        argv: the config arguments (`--config ... --set ...`).
        use_uris: pass artifact URIs (gs://) instead of local paths (Beam on Dataflow).
        caching: whether the orchestrator may reuse a previous execution.
        after: steps that must succeed before this one starts (no artifact passed).
    """

    name: str
    inputs: dict[str, tuple[str, str]]
    input_types: dict[str, str]
    outputs: dict[str, str]
    argv: tuple[str, ...]
    use_uris: bool = False
    caching: bool = True
    after: tuple[str, ...] = ()


def resolve_dag(dag: str) -> Callable:
    """Import the DAG function named `module:function` (it takes the config)."""
    module, sep, function = dag.partition(":")
    if not sep:
        raise UsageError(f"dag {dag!r}: expected module:function")
    return getattr(importlib.import_module(module), function)


def config_argv(config, beam_args: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The arguments that hand the resolved config to a component process.

    Args:
        config: the resolved `LmpipeConfig`.
        beam_args: replaces `pipeline.beam_args` (a Beam step on Dataflow), if given.

    Returns:
        `--config /dev/null` and one `--set SECTION=<json>` per section.
    """
    raw = to_dict(config)
    if beam_args is not None:
        raw["pipeline"]["beam_args"] = list(beam_args)
    argv = ["--config", "/dev/null"]
    for section, values in raw.items():
        if section not in ORCHESTRATOR_SECTIONS:
            argv += ["--set", f"{section}={json.dumps(values, ensure_ascii=False)}"]
    return tuple(argv)


def artifact_argv(inputs, outputs, ref: Callable[[str, str], object]) -> list:
    """The `--input`/`--output` arguments of a step.

    Args:
        inputs: the input names.
        outputs: the output names.
        ref: (io, name) -> the artifact's location (a path, or a kfp placeholder), where
            io is `input` or `output`.

    Returns:
        The arguments, e.g. `["--input", "documents=/gcs/b/x", "--output", ...]`.
    """
    argv = []
    for io, names in (("input", inputs), ("output", outputs)):
        for name in names:
            argv += [f"--{io}", f"{name}={ref(io, name)}"]
    return argv


def plan_steps(config, nodes: list, beam_args_for: Callable[[str], tuple[str, ...] | None]) -> list[Step]:
    """The enabled nodes as kfp steps, wired like the local DAG.

    An optional input whose upstream is switched off is left out of the step (not passed
    as an absent optional input), so the compiled spec never depends on a runtime
    `IfPresent` check.

    Args:
        config: the resolved `LmpipeConfig`.
        nodes: the DAG (`pipeline.dag.create_pipeline(config)` or a test's own).
        beam_args_for: step name -> the Beam options of a step that runs on Dataflow
            (it then gets gs:// URIs), or None to keep `pipeline.beam_args`.

    Returns:
        The steps in execution order.
    """
    enabled = {node.name for node in nodes if node.enabled}
    steps = []
    for node in nodes:
        if not node.enabled:
            continue
        wiring = {}
        for name, (upstream, output) in node.wiring.items():
            if upstream in enabled:
                wiring[name] = (upstream, output)
            elif name not in node.spec.optional_inputs:
                raise UsageError(f"component {node.name} needs {name} from {upstream}, "
                                 f"which this config switches off")
        beam_args = beam_args_for(node.name)
        steps.append(Step(
            name=node.name, inputs=wiring,
            input_types={name: node.spec.inputs[name] for name in wiring},
            outputs=dict(node.spec.outputs), argv=config_argv(config, beam_args),
            use_uris=beam_args is not None,
            # A step that reads outside the DAG (raw files, the model in service) must run
            # every time: the orchestrator's cache cannot see those inputs change.
            caching=bool(node.spec.inputs) and not node.spec.reads_outside_dag(config),
            after=tuple(name for name in node.after if name in enabled),
        ))
    return steps
