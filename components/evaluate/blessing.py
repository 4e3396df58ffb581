"""The release decision: TFMA's threshold failures -> blessed or not, with every reason."""

from __future__ import annotations


def decide(failures: list[dict], metrics: dict, *, slice_gate_min_examples: int,
           baseline: dict | None) -> dict:
    """The verdict part of `blessing.json`.

    Args:
        failures: TFMA's violated thresholds (see `analysis.read_validation`).
        metrics: the metrics document, {"overall", "slices", "baseline", ...}.
        slice_gate_min_examples: failures on smaller slices do not count (too noisy).
        baseline: the model in service it was compared with (version, uri, fingerprint),
            or None when nothing is in service.

    Returns:
        {"blessed", "failures", "ignored_failures", "baseline", "metrics"}; each failure
        also carries the candidate's (and baseline's) value of its metric on its slice,
        and for a change threshold the relative change.
    """
    counted, ignored = [], []
    for failure in failures:
        failure = {**failure, **_numbers(metrics, failure)}
        small = _slice_examples(metrics, failure.get("slice")) < slice_gate_min_examples
        (ignored if small else counted).append(failure)
    return {"blessed": not counted, "failures": counted, "ignored_failures": ignored,
            "baseline": baseline, "metrics": metrics.get("overall", {})}


def add_golden(verdict: dict, failures: list[dict], golden: dict, *,
               slice_gate_min_examples: int) -> None:
    """Add the golden set's failed thresholds to `verdict` (from `decide`), each marked
    `"examples": "golden"`; one that counts unblesses the model.

    Args:
        verdict: the verdict of the eval split, changed in place.
        failures: TFMA's violated thresholds over the golden set.
        golden: the golden set's metrics document ({"overall", "slices", "baseline", ...}).
        slice_gate_min_examples: as for `decide`.
    """
    found = decide(failures, golden, slice_gate_min_examples=slice_gate_min_examples,
                   baseline=verdict["baseline"])
    for kind in ("failures", "ignored_failures"):
        verdict[kind] += [{**failure, "examples": "golden"} for failure in found[kind]]
    verdict["blessed"] = verdict["blessed"] and found["blessed"]


def _values(document: dict | None, name: str | None) -> dict:
    if not document:
        return {}
    if name in (None, "overall"):
        return document.get("overall", {})
    return document.get("slices", {}).get(name, {})


def _numbers(metrics: dict, failure: dict) -> dict:
    """The candidate's and baseline's values behind a failure."""
    metric, name = failure.get("metric"), failure.get("slice")
    if metric is None:
        return {}
    candidate = _values(metrics, name).get(metric)
    numbers = {"candidate": candidate}
    if failure.get("kind") == "change":
        base = _values(metrics.get("baseline"), name).get(metric)
        numbers["baseline"] = base
        numbers["relative_change"] = ((candidate - base) / base
                                      if None not in (candidate, base) and base else None)
    return numbers


def _slice_examples(metrics: dict, name: str | None) -> float:
    """Example count of a slice; the overall slice always counts."""
    if name in (None, "overall"):
        return float("inf")
    return metrics.get("slices", {}).get(name, {}).get("example_count") or 0.0


def provenance(inputs: dict, candidate: str, runtime, lineage_inputs: tuple[str, ...],
               evaluation: dict) -> dict:
    """What push writes into the model card: which model, from which data, judged how.

    Args:
        inputs: the evaluate step's input artifacts (`model` and the data named next).
        candidate: the candidate's SavedModel directory.
        runtime: the runner's runtime (its run id).
        lineage_inputs: the input names that say where the model's data came from.
        evaluation: the evaluation settings as plain data.

    Returns:
        {"candidate", "lineage", "evaluation", "run_id"}.
    """
    from pipeline.core.contracts import serving_dir

    model = inputs["model"]
    lineage = {name: ({"uri": a.uri, "fingerprint": a.fingerprint} if a else None)
               for name, a in ((n, inputs.get(n)) for n in lineage_inputs)}
    return {"candidate": {"uri": model.uri, "fingerprint": model.fingerprint,
                          "saved_model_sha256": serving_dir.saved_model_digest(candidate)},
            "lineage": lineage, "evaluation": evaluation, "run_id": runtime.run_id}


def compare(candidate: dict, reference: dict, name: str) -> dict:
    """Per metric of the overall slice: both values, the change and the relative change.

    Args:
        candidate, reference: overall metrics of the candidate and of what it is held
            against (the model in service, or a distillation teacher).
        name: the reference's key in each entry (`baseline`, `teacher`).

    Returns:
        {metric: {"candidate", name, "change", "relative_change"}} for the metrics both have.
    """
    table = {}
    for metric, value in candidate.items():
        other = reference.get(metric)
        if value is None or other is None:
            continue
        table[metric] = {"candidate": value, name: other, "change": value - other,
                         "relative_change": (value - other) / other if other else None}
    return table
