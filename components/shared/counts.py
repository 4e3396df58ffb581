"""Counting in Beam: each element contributes a small dict of counts, summed globally.

Keys are tuples (e.g. `("split", "train", "documents")`), so names such as domains may
hold any character.
"""

from __future__ import annotations

import apache_beam as beam


def add_counts(total: dict, counts: dict) -> dict:
    """Add `counts` into `total` in place and return it."""
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value
    return total


class SumCounts(beam.CombineFn):
    """Sums dicts of counts; the empty input gives `{}`."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counts):
        return add_counts(accumulator, counts)

    def merge_accumulators(self, accumulators):
        total = {}
        for accumulator in accumulators:
            add_counts(total, accumulator)
        return total

    def extract_output(self, accumulator):
        return accumulator


class CountAll(beam.PTransform):
    """PCollection of count dicts -> a single summed dict (a singleton PCollection)."""

    def expand(self, pcoll):
        return pcoll | "Sum" >> beam.CombineGlobally(SumCounts())


def add_up(first, second):
    """Two JSON count documents (e.g. two data spans' statistics) added up: numbers
    summed, lists joined, dicts merged key by key, anything else (a setting, a name) taken
    from the first. Ratios are not numbers to sum: recompute them afterwards."""
    if isinstance(first, dict) and isinstance(second, dict):
        merged = {key: add_up(value, second[key]) if key in second else value
                  for key, value in first.items()}
        return {**merged, **{key: value for key, value in second.items() if key not in first}}
    if isinstance(first, list) and isinstance(second, list):
        return first + second
    if _is_number(first) and _is_number(second):
        return first + second
    return first


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ratio(numerator: float, denominator: float) -> float | None:
    """`numerator / denominator`, or None when the denominator is 0 (never an invented 0)."""
    return numerator / denominator if denominator else None
