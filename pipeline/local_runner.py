"""The local runner: executes the DAG in order on this machine, with caching.

For each node it resolves the inputs, computes the cache key, reuses a published result
when there is one, and otherwise runs the component into a staging directory that is
published atomically. It records everything in the metadata store and writes
`<root>/latest_run.json` at the end, also when a step fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
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

LATEST_RUN = "latest_run.json"
# The run summary's metrics (latest_run.json, README), and the unigram perplexity of the
# same eval set beside the model's, so that a reader sees at once whether it learned anything.
# The golden set's metrics (`evaluation.golden_inputs`) stay None unless evaluate measured them.
RUN_METRICS = ("eval_perplexity", "eval_bits_per_byte", "eval_token_accuracy", "blessed",
               "train_tokens_per_second", "eval_unigram_perplexity", "golden_perplexity",
               "golden_bits_per_byte")

# What a component's summary reports beside the metrics: the version push published, the
# data spans ingest chose (None without spans).
RECORD_KEYS = ("pushed_model", "spans")


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
        UsageError: a path the run needs cannot be used: the root's lock file or metadata
            store (a directory in its place, a damaged store, a full disk), or
            `latest_run.json` at the end (the run is then still recorded in the store).
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
        try:
            return _recorded_run(nodes, config, root, store, until, no_cache)
        finally:
            store.close()


def _recorded_run(nodes: list[Node], config, root: str, store: MetadataStore,
                  until: str | None, no_cache: bool) -> dict:
    """Run the nodes, recording the run's start and end in the store and its summary in
    `latest_run.json` (see `run_pipeline`)."""
    store.fail_abandoned_runs()
    runtime = Runtime(run_id=new_run_id(), root=root, beam_args=config.pipeline.beam_args)
    store.start_run(runtime.run_id, to_dict(config))
    record = {"run_id": runtime.run_id, "status": "running", "components": {},
              "metrics": dict.fromkeys(RUN_METRICS), "pushed_model": None, "spans": None}
    try:
        _run_nodes(nodes, config, runtime, store, record, until, no_cache)
        record["status"] = "succeeded"
    except BaseException:
        # An interrupt or a kill too: no run may stay "running" in the record. The run's
        # own error is the one to report, whatever the disk allows of the record.
        record["status"] = "failed"
        _record_end(root, store, record)
        raise
    problem = _record_end(root, store, record)
    if problem is not None:
        raise problem
    return record


def _record_end(root: str, store: MetadataStore, record: dict) -> UsageError | None:
    """Record how the run ended in the store and in `latest_run.json`, each as far as the
    disk allows: one failing (a full disk) does not skip the other.

    Returns:
        None, or the one-line error of the first record that could not be written.
    """
    problem = None
    try:
        store.finish_run(record["run_id"], record["status"], record)
    except UsageError as err:
        problem = err
    latest = os.path.join(root, LATEST_RUN)
    try:
        write_json_atomic(latest, record)
    except OSError as err:
        # An earlier run's summary left in place would pass for this one's: none is better.
        with contextlib.suppress(OSError):
            os.remove(latest)
        if problem is None:
            problem = UsageError(f"{latest}: cannot write ({err.strerror or err}); the run is "
                                 f"recorded {record['status']} in {store.path}")
    return problem


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
                target = record if key in RECORD_KEYS else record["metrics"]
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
        # A store that cannot be written now (a full disk) must not hide the step's error.
        with contextlib.suppress(UsageError):
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
        with beam_log(runtime, spec.name):
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


def log_path(runtime: Runtime, component: str) -> str:
    """The log file of one step of a run: `<root>/logs/<run_id>-<component>.log`."""
    return os.path.join(runtime.root, "logs", f"{runtime.run_id}-{component}.log")


def save_traceback(runtime: Runtime, component: str, err: BaseException) -> None:
    """Keep a failure's traceback in the step's log file (the user sees one line naming it:
    `err.log_path`). A log that cannot be written (a full disk) is given up: the error
    itself still reaches the user."""
    if isinstance(err, UsageError):
        return
    path = log_path(runtime, component)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:  # after what Beam logged (`beam_log`)
            traceback.print_exception(err, file=f)
    except OSError:
        return
    err.log_path = path


class _StepLogHandler(logging.FileHandler):
    """Appends records to a step's log file, opened (with its directory) at the first
    record; a record that cannot be written (a full disk) is dropped, never printed."""

    def __init__(self, path: str):
        super().__init__(path, encoding="utf-8", delay=True)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
            super().emit(record)
        except OSError:
            pass

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # a failed write: as in `emit`, the terminal stays clean


@contextlib.contextmanager
def beam_log(runtime: Runtime, component: str):
    """Send what Beam logs during a step to the step's log file instead of the terminal.

    A failing transform makes Beam log the error and its traceback itself (`ERROR
    apache_beam.runners.common ...`) before re-raising it; the user is to see lmpipe's one
    line, which names this file, where `save_traceback` then appends the traceback.

    Args:
        runtime: the run.
        component: the step.
    """
    logger = logging.getLogger("apache_beam")
    handler = _StepLogHandler(log_path(runtime, component))
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    yield
    # Only after a success: when the step failed, Beam's other worker threads may still log
    # the same failure after it was re-raised here; their lines belong in this step's log
    # too (never on the terminal), and the run ends with this step.
    logger.removeHandler(handler)
    logger.propagate = propagate
    handler.close()
