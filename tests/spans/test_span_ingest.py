"""Data spans in ingest: `{SPAN}`/`{VERSION}` patterns, the range a run trains on, one
cached artifact per span, deduplication across spans (`components/ingest/spans.py`,
`components/ingest/by_span.py`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.ingest import spans
from pipeline.core.config.data import SpansConfig
from pipeline.core.errors import UsageError
from tests.components.data_fixtures import document_texts, run_ingest


def write_span(root: Path, number: int, texts: list[str], name: str = "day-{}") -> Path:
    directory = root / name.format(number)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "part.jsonl", "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")
    return directory


def texts_of(span: int, n: int = 30) -> list[str]:
    return [f"span {span} document {i}: " + " ".join(["lorem ipsum"] * (i % 7 + 1))
            for i in range(n)]


def test_span_and_version_placeholders_find_numbers_and_keep_the_newest_version(tmp_path):
    for number, version in ((2, 1), (2, 3), (10, 1)):
        target = tmp_path / str(number) / f"v{version}"
        target.mkdir(parents=True)
        (target / "a.jsonl").write_text(json.dumps({"text": f"{number}/{version}"}) + "\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.jsonl").write_text("{}\n")
    found = spans.find_spans((str(tmp_path / "{SPAN}" / "v{VERSION}"),))
    assert [(s.number, s.version) for s in found] == [(2, 3), (10, 1)]
    assert list(found[0].files) == [str(tmp_path / "2" / "v3" / "a.jsonl")]


@pytest.mark.parametrize("config, expected", [
    (SpansConfig(), [1, 2, 5, 9]), (SpansConfig(latest=2), [5, 9]),
    (SpansConfig(first=2, last=5), [2, 5]), (SpansConfig(first=3), [5, 9]),
    (SpansConfig(last=2), [1, 2])])
def test_a_range_chooses_the_spans_a_run_trains_on(config, expected):
    found = [spans.Span(n) for n in (1, 2, 5, 9)]
    assert spans.choose(found, config) == expected


def test_a_range_with_no_span_in_it_is_one_line_naming_the_spans_found():
    with pytest.raises(UsageError, match=r"data.spans: first=20, last=30 chooses none of the "
                                         r"spans found \(1, 2\)"):
        spans.choose([spans.Span(1), spans.Span(2)], SpansConfig(first=20, last=30))


def test_a_span_pattern_matching_nothing_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="matches no files"):
        spans.find_spans((str(tmp_path / "day-{SPAN}" / "*.jsonl"),))


def test_each_span_is_ingested_once_and_dedup_holds_across_spans(tmp_path):
    data = tmp_path / "data"
    write_span(data, 1, texts_of(1))
    # span 2 repeats three documents of span 1: they are dropped and counted there
    write_span(data, 2, texts_of(2) + texts_of(1)[:3])
    pattern = [str(data / "day-{SPAN}")]
    first = run_ingest(tmp_path, pattern, tmp_path / "run1")
    assert first["chosen"] == [1, 2] and [s["reused"] for s in first["spans"]] == [False, False]
    assert first["dropped"]["earlier_span"] == 3
    assert first["documents_kept"] == 60

    write_span(data, 3, texts_of(3) + texts_of(2)[:2])
    second = run_ingest(tmp_path, pattern, tmp_path / "run2", spans={"latest": 2})
    assert [(s["span"], s["reused"]) for s in second["spans"]] == [
        (1, True), (2, True), (3, False)]
    assert second["chosen"] == [2, 3]
    # the run's documents are spans 2 and 3 only, each document once
    texts = set().union(*document_texts(tmp_path / "run2").values())
    assert texts == set(texts_of(2)) | set(texts_of(3))
    assert second["dropped"]["earlier_span"] == 5  # 3 in span 2, 2 in span 3
    # a span's artifact is the same directory in both runs: nothing was rewritten
    assert first["spans"][1]["uri"] == second["spans"][1]["uri"]
    uris = {s["span"]: Path(s["uri"]) for s in second["spans"]}
    for name in second["splits"]["train"]["shards"]:  # hard links, not copies
        split, span, shard = name.split("-", 2)
        assert os.path.samefile(tmp_path / "run2" / name,
                                uris[int(span[1:])] / f"{split}-{shard}")


def test_a_changed_span_reruns_it_and_the_spans_after_it_only(tmp_path):
    data = tmp_path / "data"
    for number in (1, 2, 3):
        write_span(data, number, texts_of(number))
    pattern = [str(data / "day-{SPAN}")]
    first = run_ingest(tmp_path, pattern, tmp_path / "run1")
    write_span(data, 2, texts_of(2) + ["a late addition to span two, long enough"])
    second = run_ingest(tmp_path, pattern, tmp_path / "run2")
    assert [s["reused"] for s in second["spans"]] == [True, False, False]
    assert second["documents_kept"] == first["documents_kept"] + 1


def test_the_content_hash_split_is_the_same_with_and_without_spans(tmp_path):
    data = tmp_path / "data"
    write_span(data, 1, texts_of(1, 60))
    write_span(data, 2, texts_of(2, 60))
    run_ingest(tmp_path, [str(data / "day-{SPAN}")], tmp_path / "spans")
    run_ingest(tmp_path, [str(data)], tmp_path / "whole")
    assert document_texts(tmp_path / "spans") == document_texts(tmp_path / "whole")


def test_the_golden_set_is_kept_out_of_every_span(tmp_path):
    data = tmp_path / "data"
    write_span(data, 1, texts_of(1))
    write_span(data, 2, texts_of(2))
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps({"text": t}) + "\n"
                              for t in (texts_of(1)[0], texts_of(2)[5])))
    stats = run_ingest(tmp_path, [str(data / "day-{SPAN}")], tmp_path / "run",
                       golden=[str(golden)])
    assert stats["dropped"]["golden"] == 2
    texts = set().union(*document_texts(tmp_path / "run").values())
    assert texts_of(1)[0] not in texts and texts_of(2)[5] not in texts
