"""Numbers the README and docs/data.md quote from the demo run are the ones it measured:
the demo's output, run record and transform statistics are kept in
`bench/measurements/demo/` (`make demo`, then `--set transform.mix_train_tails=false
--until transform` for the padded statistics)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

MEASURED = REPO / "bench" / "measurements" / "demo"


def _json(name: str) -> dict:
    return json.loads((MEASURED / name).read_text(encoding="utf-8"))


def test_the_readme_shows_the_demo_output_as_it_was_printed():
    printed = (MEASURED / "run.txt").read_text(encoding="utf-8").splitlines()
    block = printed[:printed.index("metrics:") + 7]  # the table and the six metrics
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "```\n" + "\n".join(block) + "\n```" in readme


def test_the_printed_metrics_are_the_run_records():
    record = _json("latest_run.json")
    assert record["status"] == "succeeded"
    printed = (MEASURED / "run.txt").read_text(encoding="utf-8")
    assert record["run_id"] in printed.splitlines()[0]
    metrics = record["metrics"]
    for line in (f"eval_perplexity: {metrics['eval_perplexity']:.4g}",
                 f"eval_bits_per_byte: {metrics['eval_bits_per_byte']:.4g}",
                 f"eval_token_accuracy: {metrics['eval_token_accuracy']:.4g}",
                 f"train_tokens_per_second: {metrics['train_tokens_per_second']:,.0f}",
                 f"eval_unigram_perplexity: {metrics['eval_unigram_perplexity']:.1f}"):
        assert f"  {line}\n" in printed


def _packing(stats: dict) -> dict[str, float]:
    splits = stats["splits"]
    tokens = sum(s["tokens"] for s in splits.values())
    windows = sum(s["examples"] for s in splits.values()) * stats["sequence_length"]
    return {"train": splits["train"]["packing_efficiency"],
            "eval": splits["eval"]["packing_efficiency"], "total": tokens / windows}


@pytest.fixture(scope="module")
def data_doc() -> str:
    return " ".join((REPO / "docs" / "data.md").read_text(encoding="utf-8").split())


def test_the_packing_table_row_is_the_demo_transforms(data_doc):
    mixed, padded = _packing(_json("transform-stats.json")), \
        _packing(_json("transform-stats-padded.json"))
    assert mixed["eval"] == padded["eval"]  # mixing touches the train split only
    row = (f"| {mixed['train']:.4f} | {padded['train']:.4f} | {mixed['eval']:.3f} | "
           f"{mixed['total']:.3f} |")
    assert row in data_doc


def test_the_demo_corpus_statistics_in_the_text_are_the_measured_ones(data_doc):
    stats = _json("transform-stats.json")
    ingest, evaluation = stats["ingest"], stats["splits"]["eval"]
    train = stats["splits"]["train"]
    for phrase in (f"{ingest['documents_read']:,} records read",
                   f"{ingest['dropped']['duplicate']} duplicates dropped",
                   f"{train['tokens_per_byte']:.3f} text tokens per byte",
                   f"{evaluation['documents']} documents, {len(evaluation['domains'])} domains",
                   f"for {evaluation['examples']} windows",
                   # the corpus's own domains: `(mixed)` is packing's, not the corpus's
                   f"{len(set(train['domains']) - {'(mixed)'})} domains)"):
        assert phrase in data_doc, phrase


def test_the_demo_output_is_what_lmpipe_run_prints_for_its_record():
    """The kept output's table and metric lines are the CLI's formatting of the kept run
    record (the record's JSON is key-sorted, so the order is not compared)."""
    from pipeline.cli import format_run

    printed = (MEASURED / "run.txt").read_text(encoding="utf-8").splitlines()
    block = printed[:printed.index("metrics:") + 7]
    formatted = format_run(_json("latest_run.json"), "/root").splitlines()
    assert sorted(formatted[:len(block)]) == sorted(block)
