"""The local runner: executes the DAG in order on this machine, with caching.

For each node it resolves the inputs, computes the cache key, reuses a published result
when there is one, and otherwise runs the component into a staging directory that is
published atomically. It records everything in the metadata store and writes
`<root>/latest_run.json` at the end, also when a step fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, replace

from pipeline.core import artifacts
from pipeline.core.artifacts import Artifact, Staging, write_json_atomic
from pipeline.core.component import cache_key
from pipeline.core.configio import to_dict
from pipeline.dag import Node, create_pipeline
from pipeline.core.errors import UsageError
from pipeline.lock import RootLock
from pipeline.core.metadata import MetadataStore

# The run summary's metrics (latest_run.json, README), and the unigram perplexity of the
# same eval set beside the model's, so that a reader sees at once whether it learned anything.
RUN_METRICS = ("eval_perplexity", "eval_bits_per_byte", "eval_token_accuracy", "blessed",
               "train_tokens_per_second", "eval_unigram_perplexity")


@dataclass(frozen=True)
class Runtime:
    """What a component may know about the run it is part of (never in its cache key).

    Attributes:
        run_id: the run's id.
        root: the pipeline root (absolute).
        beam_args: Beam pipeline options, passed through verbatim.
        work_dir: a directory that outlives a killed execution and is found again when the
            same execution (same cache key) is started again, e.g. for training
            checkpoints; the runner deletes it once the execution is published. None: the
            component cannot resume.
    """

    run_id: str
    root: str
    beam_args: tuple[str, ...] = ()
    work_dir: str | None = None

    def log(self, message: str) -> None:
        """Progress for the user: stderr, never stdout."""
        print(message, file=sys.stderr, flush=True)


class ComponentFailed(Exception):
    """A component raised; `cause` is the original exception."""

    def __init__(self, component: str, cause: BaseException):
        self.component = component
        self.cause = cause
        super().__init__(f"component {component} failed: {cause}")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def run_pipeline(config, *, until: str | None = None, no_cache: bool = False,
                 nodes: list[Node] | None = None) -> dict:
    """Run the pipeline locally.

    Args:
        config: the resolved `LmpipeConfig`.
        until: stop after this component (the rest are `skipped`).
        no_cache: run every component even when a published result exists.
        nodes: the DAG to run; `create_pipeline(config)` unless given (tests give their own).

    Returns:
        The run record, as written to `latest_run.json`.

    Raises:
        ComponentFailed: a component failed (the record says which).
        LockedError: another run holds the pipeline root.
    """
    nodes = create_pipeline(config) if nodes is None else nodes
    if until is not None and until not in [n.name for n in nodes]:
        raise UsageError(f"--until {until}: no such component "
                         f"(one of {', '.join(n.name for n in nodes)})")
    root = os.path.abspath(config.pipeline.root)
    os.makedirs(root, exist_ok=True)
    with RootLock(root):
        artifacts.remove_stale_staging(root)
        store = MetadataStore(os.path.join(root, "metadata.sqlite"))
        store.fail_abandoned_runs()
        runtime = Runtime(run_id=new_run_id(), root=root, beam_args=config.pipeline.beam_args)
        store.start_run(runtime.run_id, to_dict(config))
        record = {"run_id": runtime.run_id, "status": "running", "components": {},
                  "metrics": dict.fromkeys(RUN_METRICS), "pushed_model": None}
        try:
            _run_nodes(nodes, config, runtime, store, record, until, no_cache)
            record["status"] = "succeeded"
        except BaseException:
            # An interrupt or a kill too: no run may stay "running" in the record.
            record["status"] = "failed"
            raise
        finally:
            write_json_atomic(os.path.join(root, "latest_run.json"), record)
            store.finish_run(runtime.run_id, record["status"], record)
            store.close()
    return record


def _run_nodes(nodes: list[Node], config, runtime: Runtime, store: MetadataStore,
               record: dict, until: str | None, no_cache: bool) -> None:
    produced: dict[tuple[str, str], Artifact] = {}
    stopped = False
    for node in nodes:
        if stopped or not node.enabled:
            store.record_execution(runtime.run_id, node.name, "skipped", started=time.time())
            record["components"][node.name] = {"status": "skipped", "seconds": 0.0, "outputs": {}}
            # `--until tune` with tuning off still stops there, not after a whole training
            stopped = stopped or node.name == until
            continue
        outputs = _run_node(node, config, runtime, store, record, produced, no_cache)
        produced.update({(node.name, name): a for name, a in outputs.items()})
        summary = getattr(node.spec.load(), "summary", None)
        if summary is not None:
            for key, value in summary(outputs).items():
                target = record if key == "pushed_model" else record["metrics"]
                target[key] = value
        stopped = node.name == until


def _run_node(node: Node, config, runtime: Runtime, store: MetadataStore, record: dict,
              produced: dict, no_cache: bool) -> dict[str, Artifact]:
    spec = node.spec
    started = time.time()
    entry = {"status": "failed", "seconds": 0.0, "outputs": {}}
    record["components"][spec.name] = entry
    inputs = {}
    try:
        inputs = _resolve_inputs(node, config, produced)
        key = cache_key(spec, config, inputs)
        final = artifacts.execution_dir(runtime.root, spec.name, key)
        marker = None if no_cache else artifacts.read_marker(final)
        if marker is not None:
            status = "cached"
            outputs = {name: Artifact.from_json(a) for name, a in marker["outputs"].items()}
            runtime.log(f"[{spec.name}] cached ({final})")
        else:
            status = "executed"
            runtime.log(f"[{spec.name}] running")
            outputs = _execute(spec, config, runtime, key, inputs)
    except BaseException as err:
        entry["seconds"] = round(time.time() - started, 3)
        store.record_execution(runtime.run_id, spec.name, "failed", started=started,
                               seconds=entry["seconds"], inputs=inputs,
                               error=f"{err.__class__.__name__}: {err}")
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        save_traceback(runtime, spec.name, err)
        raise ComponentFailed(spec.name, err) from err
    entry.update(status=status, seconds=round(time.time() - started, 3),
                 outputs={name: a.uri for name, a in outputs.items()})
    store.record_execution(runtime.run_id, spec.name, status, cache_key=key,
                           config=to_dict(spec.sections(config)), started=started,
                           seconds=entry["seconds"], inputs=inputs, outputs=outputs)
    if status == "executed":
        runtime.log(f"[{spec.name}] done in {entry['seconds']:.1f}s")
    return outputs


def _resolve_inputs(node: Node, config, produced: dict) -> dict[str, Artifact | None]:
    inputs: dict[str, Artifact | None] = {}
    for name, source in node.wiring.items():
        artifact = produced.get(source)
        if artifact is None and name not in node.spec.optional_inputs:
            raise RuntimeError(f"input {name} of {node.name} was not produced by {source[0]}")
        inputs[name] = artifact
    for name, resolver in node.spec.resolvers.items():
        inputs[name] = resolver(config, inputs)
    return inputs


def _execute(spec, config, runtime: Runtime, key: str, inputs: dict) -> dict[str, Artifact]:
    staging = Staging(runtime.root, spec.name, key)
    work_dir = artifacts.work_dir(runtime.root, spec.name, key)
    try:
        output_dirs = {name: staging.output_dir(name) for name in spec.outputs}
        properties = spec.load().run(inputs=inputs, outputs=output_dirs,
                                     runtime=replace(runtime, work_dir=work_dir),
                                     **spec.sections(config)) or {}
        final = staging.final
        outputs = {
            name: Artifact(type=kind, uri=os.path.join(final, name),
                           fingerprint=_output_fingerprint(key, name),
                           properties=properties.get(name, {}))
            for name, kind in spec.outputs.items()
        }
        staging.commit({"component": spec.name, "cache_key": key, "run_id": runtime.run_id,
                        "inputs": {n: (a.to_json() if a else None) for n, a in inputs.items()},
                        "outputs": {n: a.to_json() for n, a in outputs.items()}})
    except BaseException:
        staging.discard()
        raise
    shutil.rmtree(work_dir, ignore_errors=True)
    return outputs


def _output_fingerprint(key: str, name: str) -> str:
    return hashlib.sha256(f"{key}/{name}".encode()).hexdigest()


def save_traceback(runtime: Runtime, component: str, err: BaseException) -> None:
    """Keep a failure's traceback in `<root>/logs/` (the user sees one line naming it)."""
    if isinstance(err, UsageError):
        return
    log_dir = os.path.join(runtime.root, "logs")
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, f"{runtime.run_id}-{component}.log")
    with open(path, "w", encoding="utf-8") as f:
        traceback.print_exception(err, file=f)
    err.log_path = path
