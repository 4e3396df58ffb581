"""The evaluation report's number formatting and its labels for a masked LM (no TFMA: the
page is written from hand-made documents)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.evaluate import report, tasks
from pipeline.core.config import EvaluationConfig
from tests.report_reader import read_report


@pytest.mark.parametrize("value, shown", [
    (15000, "15,000"), (1_500_000, "1,500,000"), (np.int64(1_234_567), "1,234,567"),
    (15000.0, "15,000"), (np.float32(2_000_000.0), "2,000,000"), (7, "7"),
    (0.125, "0.125"), (3.14159265, "3.14159"), (0.0, "0"), (2.5e20, "2.5e+20"),
    (None, "n/a"), (float("nan"), "n/a"),
])
def test_whole_numbers_have_thousands_separators_and_no_e_notation(value, shown):
    assert report.fmt(value) == shown


def _documents(objective: str | None, token_count, example_count):
    overall = {"perplexity": 12.5, "mean_nll": 2.5257, "token_accuracy": 0.25,
               "bits_per_byte": None if objective == "masked" else 1.75,
               "unigram_perplexity": 40.0, "example_count": example_count,
               "token_count": token_count}
    metrics = {"overall": overall, "slices": {"domain=a": dict(overall)}, "baseline": None,
               "diff": None, "comparison": None, "derived_slice_features": []}
    if objective is not None:
        metrics["objective"] = objective
    skipped = ([{"setting": "evaluation.max_bits_per_byte_increase", "value": 0.005,
                 "metric": "bits_per_byte", "reason": "a masked LM has no bits_per_byte"}]
               if objective == "masked" else [])
    verdict = {"blessed": True, "failures": [], "ignored_failures": [],
               "skipped_thresholds": skipped, "baseline": None, "run_id": "r",
               "candidate": {"uri": "m"}}
    samples = {"skipped": "evaluation.num_samples is 0", "samples": [], "summary": None}
    return metrics, verdict, samples


def _write_page(directory: Path, metrics: dict, verdict: dict, samples: dict) -> str:
    """A language model's report page, as evaluate writes it (the objective shown is the
    metrics document's)."""
    return tasks.LanguageModel({}).write_report(
        str(directory), metrics, verdict, samples, EvaluationConfig(slice_features=("domain",)))


def test_large_token_counts_on_the_page_are_whole_with_separators(tmp_path):
    metrics, verdict, samples = _documents(None, token_count=1_500_000, example_count=15000)
    page = _write_page(tmp_path, metrics, verdict, samples)
    cells, text = read_report(page)
    shown = {tuple(c["path"]): c["shown"] for c in cells}
    assert shown[("overall", "token_count")] == "1,500,000"
    assert shown[("overall", "example_count")] == "15,000"
    assert shown[("slices", "domain=a", "token_count")] == "1,500,000"
    assert "e+0" not in text
    assert "masked" not in text


def test_a_masked_lm_is_labelled_and_its_skipped_threshold_shown(tmp_path):
    metrics, verdict, samples = _documents("masked", token_count=300.0, example_count=10.0)
    page = _write_page(tmp_path, metrics, verdict, samples)
    cells, text = read_report(page)
    raw = Path(page).read_text(encoding="utf-8")
    assert 'data-objective="masked"' in raw
    assert "<td>masked-token perplexity</td>" in raw
    assert "<td>masked-token accuracy</td>" in raw
    shown = {tuple(c["path"]): c["shown"] for c in cells}
    assert shown[("overall", "bits_per_byte")] == "n/a"
    assert shown[("overall", "perplexity")] == "12.5"
    assert "evaluation.max_bits_per_byte_increase" in text
    # No chart of a metric the model does not have.
    assert not (tmp_path / "slices_bits_per_byte.png").exists()
    assert (tmp_path / "slices_perplexity.png").exists()
