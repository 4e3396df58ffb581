"""Running one component alone: what `lmpipe component NAME` and a Vertex step do.

No cache and no staging here: the orchestrator (kfp, Vertex) owns both. Inputs arrive as
URIs; inputs that come from outside the DAG are resolved as the local runner would. Local
output directories are marked as this step's (`pipeline/step_outputs.py`), so a failed
rerun leaves nothing that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil

from pipeline import step_outputs
from pipeline.core.artifacts import Artifact
from pipeline.core.component import cache_key
from pipeline.dag import create_pipeline
from pipeline.core.errors import UsageError


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """Parse `NAME=URI` arguments into a dict."""
    pairs = {}
    for item in items:
        name, sep, uri = item.partition("=")
        if not sep or not name or not uri:
            raise UsageError(f"{flag} {item!r}: expected NAME=URI")
        if name in pairs:
            raise UsageError(f"{flag} {name}: given twice ({pairs[name]} and {uri})")
        pairs[name] = uri
    return pairs


def run_component(name: str, config, input_uris: dict[str, str], output_uris: dict[str, str],
                  *, nodes: list | None = None) -> dict:
    """Run component `name` on the given input and output locations.

    Args:
        name: the component.
        config: the resolved `LmpipeConfig`.
        input_uris: input name -> directory of an upstream artifact.
        output_uris: output name -> directory to write (local ones are created if missing).
        nodes: the DAG that `name` belongs to; `create_pipeline(config)` unless given
            (tests run their own components through kfp.local).

    Returns:
        Output name -> its URI and properties.
    """
    nodes = {node.name: node for node in (create_pipeline(config) if nodes is None else nodes)}
    if name not in nodes:
        raise UsageError(f"component {name!r}: unknown (one of {', '.join(nodes)})")
    spec = nodes[name].spec
    inputs = _inputs(spec, config, input_uris, output_uris)
    # Only the chief of a training cluster owns the outputs; the other replicas get the same
    # paths and write nothing there.
    owner = _is_chief_replica()
    # A gs:// output (a Beam step on Dataflow) has no directory to create or mark.
    local_outputs = {out: uri for out, uri in output_uris.items() if "://" not in uri}
    step_outputs.refuse_serving_dir(name, local_outputs, config.push.serving_dir)
    _claim_outputs(name, local_outputs, owner)
    work_dir = _work_dir(spec, config, inputs, output_uris)
    properties = _execute(spec, config, inputs, output_uris, work_dir)
    if owner:
        for uri in local_outputs.values():
            step_outputs.finish(name, uri)
    if work_dir is not None and owner:
        shutil.rmtree(work_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(work_dir))  # only when no other step's is there
    return {out: {"uri": uri, "properties": properties.get(out, {})}
            for out, uri in output_uris.items()}


def _inputs(spec, config, input_uris: dict[str, str], output_uris: dict[str, str]) -> dict:
    """The step's input artifacts: the given locations, checked, and the resolved ones."""
    name = spec.name
    missing = set(spec.outputs) - set(output_uris)
    unknown = (set(input_uris) - set(spec.inputs)) | (set(output_uris) - set(spec.outputs))
    if unknown:
        raise UsageError(f"component {name}: unknown input/output {', '.join(sorted(unknown))}")
    if missing:
        raise UsageError(f"component {name}: --output needed for {', '.join(sorted(missing))}")
    inputs: dict[str, Artifact | None] = {}
    for input_name, kind in spec.inputs.items():
        uri = input_uris.get(input_name)
        if uri is None and input_name not in spec.optional_inputs:
            raise UsageError(f"component {name}: --input {input_name}=URI is required")
        if uri and "://" not in uri:
            if not os.path.isdir(uri):
                raise UsageError(f"component {name}: --input {input_name}={uri}: no such "
                                 f"directory")
            step_outputs.check_input(name, input_name, uri)
        inputs[input_name] = _external(kind, uri) if uri else None
    for input_name, resolver in spec.resolvers.items():
        inputs[input_name] = resolver(config, inputs)
    return inputs


def _claim_outputs(name: str, local_outputs: dict[str, str], owner: bool) -> None:
    for output_name, uri in local_outputs.items():
        _make_output_dir(name, output_name, uri)
    if owner:
        try:
            step_outputs.claim(name, local_outputs)
        except OSError as err:
            raise UsageError(f"component {name}: --output {err.filename}: cannot be written "
                             f"({err.strerror or err.__class__.__name__})") from None


def _execute(spec, config, inputs: dict, output_uris: dict[str, str], work_dir) -> dict:
    """Run the component's code; a failure other than a usage error keeps its traceback in
    the root's logs and becomes `ComponentFailed`."""
    from pipeline.local_runner import (ComponentFailed, Runtime, beam_log, new_run_id,
                                       save_traceback)

    runtime = Runtime(run_id=new_run_id(), root=os.path.abspath(config.pipeline.root),
                      beam_args=config.pipeline.beam_args, work_dir=work_dir)
    try:
        with beam_log(runtime, spec.name):
            return spec.load().run(inputs=inputs, outputs=output_uris, runtime=runtime,
                                   **spec.sections(config)) or {}
    except UsageError:
        raise
    except FileNotFoundError as err:
        missing = _missing_input_file(err, spec.name, inputs)
        if missing is not None:
            raise missing from None
        save_traceback(runtime, spec.name, err)
        raise ComponentFailed(spec.name, err) from err
    except Exception as err:
        save_traceback(runtime, spec.name, err)
        raise ComponentFailed(spec.name, err) from err


def _make_output_dir(component: str, output_name: str, uri: str) -> None:
    try:
        os.makedirs(uri, exist_ok=True)
    except OSError as err:
        why = "a file" if os.path.isfile(uri) else err.strerror or err.__class__.__name__
        raise UsageError(f"component {component}: --output {output_name}={uri}: cannot be a "
                         f"directory ({why})") from None


def _missing_input_file(err: FileNotFoundError, component: str, inputs: dict) -> UsageError | None:
    """The usage error for a file missing inside an --input directory (a directory that is
    not that artifact, e.g. raw data given as `documents`), else None."""
    path = os.path.abspath(str(err.filename or ""))
    holders = {}
    for input_name, artifact in inputs.items():
        uri = getattr(artifact, "uri", None)
        if uri and "://" not in uri and path.startswith(os.path.abspath(uri) + os.sep):
            holders.setdefault(os.path.abspath(uri), []).append(input_name)
    if not holders:
        return None
    uri = max(holders, key=len)  # the innermost directory holding the missing file
    kinds = " or ".join(inputs[n].type for n in holders[uri])
    return UsageError(f"component {component}: --input {'/'.join(holders[uri])}={uri}: no "
                      f"{os.path.relpath(path, uri)} there (not a {kinds} artifact?)")


def _is_chief_replica() -> bool:
    """False on the non-chief replicas of a Vertex training cluster (per `TF_CONFIG`) and on
    the workers of a parallel KerasTuner sweep: they get the same paths and must leave the
    outputs and the shared scratch directory to the chief."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    if tuner_id and "chief" not in tuner_id:  # KerasTuner's own test for its chief
        return False
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return True
    task = tf_config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    return kind in (None, "chief") or (
        kind == "worker" and index == 0 and "chief" not in (tf_config.get("cluster") or {}))


def _work_dir(spec, config, inputs: dict, output_uris: dict[str, str]) -> str | None:
    """A scratch directory beside the outputs that the same command finds again.

    A restarted step (same config, inputs and output paths, e.g. a Vertex replica that was
    preempted) resumes from what it left there. Outputs on a URL scheme get none.
    """
    if any("://" in uri for uri in output_uris.values()):
        return None
    first = os.path.abspath(output_uris[sorted(output_uris)[0]])
    key = cache_key(spec, config, inputs)
    tag = hashlib.sha256(json.dumps([key, sorted(output_uris.items())]).encode()).hexdigest()
    return os.path.join(os.path.dirname(first), ".lmpipe-work", f"{spec.name}-{tag[:16]}")


def _external(kind: str, uri: str) -> Artifact:
    return Artifact(type=kind, uri=uri, fingerprint=hashlib.sha256(uri.encode()).hexdigest())
