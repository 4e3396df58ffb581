"""The blessing artifact (evaluate's verdict) and the evaluation's metrics document.

    blessing/blessing.json     {"blessed": bool, "failures": [{"metric", "slice", "kind",
                               "threshold" (TFMA's, as JSON), "value", "candidate", ...}],
                               "ignored_failures", "baseline" ({"uri", "fingerprint",
                               "version", "model_sha256", "run_id"} of the model in
                               service it was compared with, or null),
                               "compared_with_service" (bool), "metrics", "slices",
                               "comparison", "candidate" {"uri", "fingerprint",
                               "saved_model_sha256"}, "lineage", "evaluation", "run_id",
                               ...}: the release decision, and what push needs for the
                               model card
    evaluation/metrics.json    the metrics document: {"overall", "slices", "baseline",
                               "comparison", ...} (the fields of each task type are in
                               `components/evaluate/tasks.py`)

A verdict with `compared_with_service` true holds only while the serving directory's
newest version is the `baseline` it was judged against (null: while nothing is in
service); push checks that under the serving directory's lock (`judged_against`). Without
the key (a fine-tuning task's absolute gate, a blessing written by hand) the verdict does
not depend on what is in service.

Paths go through `pipeline/core/files.py`, so any Beam filesystem (local, gs://) works.
"""

from __future__ import annotations

from pipeline.core import files
from pipeline.core.errors import UsageError

BLESSING_FILE = "blessing.json"
METRICS_FILE = "metrics.json"


def write_blessing(directory: str, verdict: dict) -> None:
    """Write `blessing.json` into a blessing directory."""
    files.write_json(files.join(directory, BLESSING_FILE), verdict)


def write_metrics(directory: str, metrics: dict) -> None:
    """Write `metrics.json` into an evaluation directory."""
    files.write_json(files.join(directory, METRICS_FILE), metrics)


def read_blessing(directory: str) -> dict:
    """A blessing artifact's verdict, checked.

    Raises:
        UsageError: `blessing.json` is missing, not JSON, or has no boolean `blessed`.
    """
    path = files.join(directory, BLESSING_FILE)
    try:
        verdict = files.read_json(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: unreadable blessing ({err.__class__.__name__})") from None
    if not isinstance(verdict, dict) or not isinstance(verdict.get("blessed"), bool):
        raise UsageError(f"{path}: expected an object with a boolean 'blessed'")
    return verdict


def judged_against(verdict: dict) -> tuple[bool, tuple[int, str] | None]:
    """What was in service when a verdict was made, if the verdict depends on it.

    Args:
        verdict: a blessing's content (`read_blessing`).

    Returns:
        (compared, state): whether the verdict compared the candidate with the model in
        service, and that model as (version, SavedModel digest), None when nothing was in
        service.
    """
    if verdict.get("compared_with_service") is not True:
        return False, None
    baseline = verdict.get("baseline")
    if not isinstance(baseline, dict):
        return True, None
    return True, (baseline.get("version"), baseline.get("model_sha256"))


def read_outputs(evaluation, blessing) -> tuple[dict, dict]:
    """The metrics document and the verdict of evaluate's output artifacts, leniently.

    Args:
        evaluation: the `evaluation` output artifact, or None.
        blessing: the `blessing` output artifact, or None.

    Returns:
        (metrics, verdict), each {} when its artifact or file is absent or unreadable (a
        run's summary must not fail on a step that wrote nothing).
    """
    return (files.read_artifact_json(evaluation, METRICS_FILE) or {},
            files.read_artifact_json(blessing, BLESSING_FILE) or {})


def threshold_text(threshold) -> str:
    """A failure's TFMA threshold (as JSON) in words."""
    if not threshold:
        return "(none recorded)"
    value = threshold.get("valueThreshold")
    if value is not None:
        bounds = [f">= {value['lowerBound']}" if "lowerBound" in value else "",
                  f"<= {value['upperBound']}" if "upperBound" in value else ""]
        return "value " + " and ".join(b for b in bounds if b)
    change = threshold.get("changeThreshold", {})
    limits = [f"relative {change['relative']:.4%}" if "relative" in change else "",
              f"absolute {change['absolute']}" if "absolute" in change else ""]
    direction = change.get("direction", "").lower().replace("_", " ")
    return f"may not worsen by more than {' or '.join(l for l in limits if l)} ({direction})"
