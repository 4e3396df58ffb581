"""`bench/serving_load.py` runs end to end at a tiny shape (the real numbers come from
running it by hand at the benchmark shape)."""

from __future__ import annotations

import json

import pytest

from bench import serving_load


@pytest.mark.slow
def test_the_serving_benchmark_runs_at_a_tiny_shape(tmp_path):
    out = tmp_path / "report.json"
    serving_load.main(["--clients", "1", "4", "--new", "4", "--requests", "8", "--seconds", "8",
                       "--vocab", "512", "--width", "32", "--layers", "1", "--heads", "2",
                       "--sequence", "32", "--work", str(tmp_path / "work"),
                       "--demo", str(tmp_path / "no-demo"), "--json", str(out)])
    report = json.loads(out.read_text())
    levels = report["benchmark_shape"]["levels"]
    assert [(level["clients"], level["failed"]) for level in levels] == [(1, 0), (4, 0)]
    assert all(level["requests"] >= 8 and level["new_tokens_per_second"] > 0 for level in levels)
    assert report["push_mid_load"]["failed"] == 0
    assert report["push_mid_load"]["versions"] == ["1", "2"]
    assert report["bad_requests_during_load"] == {
        "statuses": [400, 400, 400, 400, 400, 400, 400, 400, 400, 400], "all_4xx": True,
        "load_failed": 0}
    assert report["server_exit_status"] == 0 and "demo_model" not in report
