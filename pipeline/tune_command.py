"""`lmpipe tune`: run the sweep alone and print its table.

As the chief of a parallel sweep, or alone, it runs the upstream components and `tune`
through the local runner (so the result is cached and a later `lmpipe run` with
`tuning.enabled: true` reuses it). As a worker (`KERASTUNER_TUNER_ID` names a worker, or
`TF_CONFIG` makes this replica one), it must not take the pipeline root's lock, which
the chief holds for the whole sweep: it waits for the upstream results in the cache,
runs trials the chief hands out, and writes nothing but its trials.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from pipeline.core import artifacts
from pipeline.core.component import cache_key
from pipeline.dag import create_pipeline
from pipeline.core.errors import UsageError
from tuning import distributed


def tune(config) -> str:
    """Run the sweep of `config` (tuning switched on) and describe its result.

    Args:
        config: the resolved `LmpipeConfig`.

    Returns:
        The text for stdout: the trial table and the best values, or a worker's note.
    """
    os.environ.update(distributed.keras_tuner_env(os.environ))
    if distributed.role(os.environ) == "worker":
        return _work(config)
    from pipeline.local_runner import run_pipeline

    record = run_pipeline(config, until="tune")
    return describe(record["components"]["tune"]["outputs"]["hyperparameters"])


def describe(directory: str) -> str:
    """The trial table, the best values and where the artifact is.

    Args:
        directory: a hyperparameters artifact.

    Returns:
        Text for stdout.
    """
    import json

    from tuning import results

    with open(os.path.join(directory, results.SWEEP_FILE), encoding="utf-8") as f:
        sweep = json.load(f)
    best = ", ".join(f"{key}={value}" for key, value in sorted(sweep["best"].items()))
    return "\n".join([
        results.format_table(os.path.join(directory, results.TRIALS_FILE)),
        f"best: trial {sweep['best_trial']} ({sweep['objective']} {sweep['best_value']:.4f}): {best}",
        f"{sweep['completed']} completed, {sweep['failed']} failed; "
        f"{sweep['tokens_spent']:,} tokens spent ({sweep['tokens_per_trial']:,} per full trial)",
        f"hyperparameters: {directory}",
    ])


def _work(config) -> str:
    from pipeline.entrypoint import run_component

    inputs = cached_inputs(config, "tune", config.tuning.chief_wait_seconds)
    print(f"worker {os.environ[distributed.TUNER_ID]}: asking the chief at "
          f"{os.environ[distributed.ORACLE_IP]}:{os.environ[distributed.ORACLE_PORT]} for "
          "trials", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="lmpipe-tune-worker-") as scratch:
        run_component("tune", config, inputs, {"hyperparameters": scratch})
    return f"worker {os.environ[distributed.TUNER_ID]}: no more trials"


def cached_inputs(config, name: str, timeout: float) -> dict[str, str]:
    """The URIs of `name`'s inputs from the cache, waiting until they are published.

    Args:
        config: the resolved `LmpipeConfig`.
        name: the component whose inputs are wanted.
        timeout: seconds to wait for an upstream result before giving up.

    Returns:
        Input name -> artifact directory.
    """
    root = os.path.abspath(config.pipeline.root)
    nodes = create_pipeline(config)
    target = next(node for node in nodes if node.name == name)
    produced = {}
    for node in nodes[:nodes.index(target)]:
        if not node.enabled:
            continue
        inputs = {key: produced.get(source) for key, source in node.wiring.items()}
        inputs.update({key: resolve(config, inputs) for key, resolve in node.spec.resolvers.items()})
        marker = _wait(artifacts.execution_dir(root, node.name, cache_key(node.spec, config, inputs)),
                       node.name, timeout)
        produced.update({(node.name, out): artifacts.Artifact.from_json(a)
                         for out, a in marker["outputs"].items()})
    return {key: produced[source].uri for key, source in target.wiring.items()}


def _wait(directory: str, name: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    told = False
    while (marker := artifacts.read_marker(directory)) is None:
        if time.monotonic() > deadline:
            raise UsageError(f"{name}'s result is not in the cache ({directory}); run the "
                             "chief (or `lmpipe run --until transform`) with the same config")
        if not told:
            print(f"waiting for {name} in {directory}", file=sys.stderr, flush=True)
            told = True
        time.sleep(2)
    return marker
