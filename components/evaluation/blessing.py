"""The release decision: TFMA's threshold failures -> blessed or not, with every reason."""

from __future__ import annotations


def decide(failures: list[dict], metrics: dict, *, slice_gate_min_examples: int,
           baseline: dict | None) -> dict:
    """The content of `blessing.json`.

    Args:
        failures: TFMA's violated thresholds (see `analysis.read_validation`).
        metrics: the candidate's metrics, {"overall": {...}, "slices": {...}}.
        slice_gate_min_examples: failures on smaller slices do not count (too noisy).
        baseline: the model in service it was compared with (version, uri, fingerprint),
            or None when nothing is in service.

    Returns:
        {"blessed", "failures", "ignored_failures", "baseline", "metrics"}.
    """
    counted, ignored = [], []
    for failure in failures:
        small = _slice_examples(metrics, failure.get("slice")) < slice_gate_min_examples
        (ignored if small else counted).append(failure)
    return {"blessed": not counted, "failures": counted, "ignored_failures": ignored,
            "baseline": baseline, "metrics": metrics.get("overall", {})}


def _slice_examples(metrics: dict, name: str | None) -> float:
    """Example count of a slice; the overall slice always counts."""
    if name in (None, "overall"):
        return float("inf")
    return metrics.get("slices", {}).get(name, {}).get("example_count") or 0.0
