"""What a kfp.local step runs: the component's command line, parsed and run as the CLI would."""

from __future__ import annotations

import json
import sys

from pipeline.vertex.steps import artifact_argv, resolve_dag


def run_step(name: str, dag: str, argv: list[str], inputs: dict, outputs: dict) -> dict:
    """Run one component from inside a kfp Python-function task.

    The arguments are the ones the Vertex container gets, parsed by `lmpipe component`'s
    own parser; only the DAG lookup differs (`dag`, so tests can run their own components).

    Args:
        name: the component.
        dag: `module:function` that returns the DAG for a config.
        argv: the config arguments (`steps.config_argv`).
        inputs: input name -> kfp input artifact.
        outputs: output name -> kfp output artifact.

    Returns:
        What `run_component` returns: output name -> URI and properties.
    """
    from pipeline.cli import build_parser
    from pipeline.core.configio import load_config
    from pipeline.entrypoint import parse_pairs, run_component

    artifacts = {"input": inputs, "output": outputs}
    command = ["component", name, *argv,
               *artifact_argv(inputs, outputs, lambda io, artifact: artifacts[io][artifact].path)]
    args = build_parser().parse_args(command)
    config = load_config(args.config, args.set)
    result = run_component(name, config, parse_pairs(args.input, "--input"),
                           parse_pairs(args.output, "--output"), nodes=resolve_dag(dag)(config))
    print(json.dumps(result, sort_keys=True), file=sys.stderr)
    return result
