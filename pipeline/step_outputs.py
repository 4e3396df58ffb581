"""The output directories of a component run alone (`lmpipe component`, a Vertex step).

The local runner stages every output and publishes it only when the execution succeeds; a
step run alone writes straight into the directories it is given (an orchestrator's URIs,
or a user's paths), so it marks them instead, as TFX's launcher clears an output before
its executor runs again:

- a new or empty directory gets a mark, `{"component": ..., "complete": false}`;
- a directory that holds an earlier execution of the same component (its mark) is emptied
  first, so a rerun that fails leaves no stats or model of the earlier one beside its own
  partial files (resumable state lives in the step's work directory, not here);
- a directory holding anything else is refused: it is not ours to delete;
- so is one holding a serving version (an integer-named directory with `saved_model.pb`,
  at any depth), even under our mark: emptying it would take a model out of service; and
  `push.serving_dir` itself, a directory inside it or one holding it is never an output
  (`refuse_serving_dir`);
- the mark says `complete: true` only after the component returned, and an `--input`
  whose mark says otherwise is refused by name.

Outputs on a URL scheme (a Beam step writing gs:// on Dataflow) are left to their writer.
"""

from __future__ import annotations

import json
import os
import shutil

from pipeline.core.artifacts import STEP_OUTPUT_MARK as MARK, write_json_atomic
from pipeline.core.contracts import serving_dir
from pipeline.core.errors import UsageError


def refuse_serving_dir(component: str, outputs: dict[str, str], serving: str) -> None:
    """Refuse an output that is the serving directory, lies inside it or holds it: a
    rerun empties its output, which would delete the versions in service.

    Args:
        component: the component run alone.
        outputs: output name -> local directory.
        serving: `push.serving_dir` (a URL is not compared).

    Raises:
        UsageError: naming the output and the serving directory.
    """
    if "://" in serving:
        return
    served = os.path.realpath(serving)
    for output_name, uri in outputs.items():
        path = os.path.realpath(uri)
        if path == served:
            relation = "is"
        elif path.startswith(os.path.join(served, "")):
            relation = "is inside"
        elif served.startswith(os.path.join(path, "")):
            relation = "holds"
        else:
            continue
        raise UsageError(f"component {component}: --output {output_name}={uri}: {relation} "
                         f"push.serving_dir ({serving}), whose versions are in service; give "
                         "another directory")


def claim(component: str, outputs: dict[str, str]) -> None:
    """Make the existing local directories `outputs` (name -> path) this execution's, as
    above. Every one is checked before any is emptied.

    Raises:
        UsageError: one holds files that no earlier `component` execution wrote, or a
            serving version.
    """
    for output_name, uri in outputs.items():
        served = serving_dir.version_below(uri)
        if served is not None:
            raise UsageError(f"component {component}: --output {output_name}={uri}: holds the "
                             f"serving version {served}, which emptying it would take out of "
                             "service; give a new or empty directory")
        mark = _read_mark(uri)
        if os.listdir(uri) and (mark is None or mark.get("component") != component):
            owner = (f"{mark.get('component', 'another step')}'s output" if mark
                     else "files lmpipe did not write")
            raise UsageError(f"component {component}: --output {output_name}={uri}: holds "
                             f"{owner}; give a new or empty directory")
    for uri in outputs.values():
        for entry in os.listdir(uri):
            path = os.path.join(uri, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        _write_mark(uri, component, complete=False)


def finish(component: str, uri: str) -> None:
    """Mark the output `uri` complete (the component returned)."""
    _write_mark(uri, component, complete=True)


def check_input(component: str, input_name: str, uri: str) -> None:
    """Refuse an `--input` that a component run alone began and did not finish.

    Directories without a mark (the local runner's artifacts, a user's own) are accepted.

    Raises:
        UsageError: naming the input and the component that left it unfinished.
    """
    mark = _read_mark(uri)
    if mark is not None and mark.get("complete") is not True:
        raise UsageError(f"component {component}: --input {input_name}={uri}: "
                         f"{mark.get('component', 'its component')} did not finish writing it")


def _read_mark(uri: str) -> dict | None:
    try:
        with open(os.path.join(uri, MARK), encoding="utf-8") as f:
            mark = json.load(f)
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) else None


def _write_mark(uri: str, component: str, *, complete: bool) -> None:
    write_json_atomic(os.path.join(uri, MARK), {"component": component, "complete": complete})
