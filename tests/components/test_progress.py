"""Progress lines of the long data steps (`components/shared/progress.py`): a real Beam
ingest, transform and labels over real files, their stderr read back and checked against
the corpus."""

from __future__ import annotations

import json
import pickle
import random
import re
import threading

import pytest

from components.shared import progress
from pipeline.core.artifacts import Artifact
from tests.components.data_fixtures import (data_config, run_ingest, run_tokenizer, run_transform,
                                           runtime)
from tests.conftest import tiny_documents, write_jsonl

_INGEST_LINE = re.compile(r"^\[ingest\] progress: (\d+)/(\d+) files, ([\d.]+)/([\d.]+) MB "
                          r"\(([\d.]+) MB/s\), \d+m\d\ds$")


def _corpus(directory, num_files: int, docs_per_file: int) -> list:
    """`num_files` JSONL files of distinct random-word documents (about 1 KB each)."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]
    rng = random.Random(0)
    paths = []
    for f in range(num_files):
        docs = [{"text": " ".join(rng.choice(words) for _ in range(150)) + f" {f}-{i}",
                 "domain": words[i % 4]} for i in range(docs_per_file)]
        paths.append(write_jsonl(directory / f"part-{f}.jsonl", docs))
    return paths


def _lines(stderr: str, step: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"[{step}] progress:")]


def test_ingest_reports_files_and_bytes_that_add_up_to_the_corpus(tmp_path, monkeypatch,
                                                                  capfd):
    paths = _corpus(tmp_path / "corpus", num_files=4, docs_per_file=2500)
    total_bytes = sum(p.stat().st_size for p in paths)
    # Short enough that the shuffle and the writing after the reading (tenths of a second)
    # see several lines.
    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.04)

    stats = run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "documents")

    lines = _lines(capfd.readouterr().err, "ingest")
    assert stats["documents_kept"] == 10000
    assert lines, "an ingest of several seconds printed no progress line"
    parsed = [_INGEST_LINE.match(line) for line in lines]
    assert all(parsed), lines
    files_done = [int(m[1]) for m in parsed]
    mb_done = [float(m[3]) for m in parsed]
    assert {int(m[2]) for m in parsed} == {4}
    assert {float(m[4]) for m in parsed} == {round(total_bytes / 2**20, 1)}
    assert files_done == sorted(files_done) and mb_done == sorted(mb_done)
    assert all(0 <= n <= 4 for n in files_done)
    assert all(mb <= total_bytes / 2**20 + 0.05 for mb in mb_done)
    # The shuffle and the writing of the shards follow the reading, so the last line
    # reports the whole input read; an earlier one, part of it.
    assert any(0 < mb < total_bytes / 2**20 - 0.5 for mb in mb_done), mb_done
    assert files_done[-1] == 4 and abs(mb_done[-1] - total_bytes / 2**20) <= 0.05


def test_a_step_shorter_than_the_interval_prints_no_progress(tmp_path, capfd):
    write_jsonl(tmp_path / "corpus" / "c.jsonl", tiny_documents())

    run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "documents")

    err = capfd.readouterr().err
    assert _lines(err, "ingest") == []
    assert re.search(r"^\[ingest\] 240 read, \d+ kept; dropped:", err, re.M)


def test_transform_and_labels_report_shards_done(tmp_path, monkeypatch, capfd):
    from components import labels

    docs = [dict(d, label=d["domain"]) for d in tiny_documents(copies=40)]
    write_jsonl(tmp_path / "corpus" / "c.jsonl", docs)
    documents = tmp_path / "documents"
    run_ingest(tmp_path, [str(tmp_path / "corpus")], documents)
    run_tokenizer(tmp_path, documents, tmp_path / "tokenizer", type="bpe", vocab_size=300)
    stats = json.loads((documents / "stats.json").read_text())
    num_shards = sum(len(s["shards"]) for s in stats["splits"].values())
    # Every step here takes well over this interval (Beam's start alone does).
    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.02)
    capfd.readouterr()

    run_transform(tmp_path, documents, tmp_path / "tokenizer", tmp_path / "out",
                  sequence_length=32)
    (tmp_path / "labels").mkdir()
    labels.run({"documents": Artifact("Documents", str(documents), "d")},
               {"labels": str(tmp_path / "labels")}, runtime(tmp_path),
               data_config([str(documents)], label_field="label"))

    err = capfd.readouterr().err
    for step in ("transform", "labels"):
        lines = _lines(err, step)
        assert lines, f"no {step} progress line"
        done = [re.match(rf"^\[{step}\] progress: (\d+)/(\d+) shards \([\d.]+/s\), \d+m\d\ds$",
                         line) for line in lines]
        assert all(done), lines
        assert {int(m[2]) for m in done} == {num_shards}
        assert all(0 <= int(m[1]) <= num_shards for m in done)


def test_a_meter_outside_its_process_counts_nothing_and_the_thread_stops():
    logged = []
    with progress.reporting(logged.append, "step", {"shards": 3}, interval=0.01) as meter:
        copy = pickle.loads(pickle.dumps(meter))  # what a worker process unpickles
        copy.add(shards=2)
        threading.Event().wait(0.1)
    progress.Meter(meter.key).add(shards=1)  # after the step: its key is gone, no error
    assert logged and logged[-1].startswith("[step] progress: 2/3 shards (")
    assert not any(t.name == "progress-step" for t in threading.enumerate())
    assert meter.key not in progress._ACTIVE


def test_format_line_names_amounts_totals_and_rate():
    line = progress.format_line("ingest", {"files": 3, "bytes": 12 * 2**20},
                                {"files": 10, "bytes": 50 * 2**20}, 63.0)
    assert line == "[ingest] progress: 3/10 files, 12.0/50.0 MB (0.2 MB/s), 1m03s"


@pytest.mark.parametrize("mode", ["multi_processing"])
def test_a_worker_process_run_prints_no_progress_and_writes_the_same_documents(
        tmp_path, monkeypatch, capfd, mode):
    write_jsonl(tmp_path / "corpus" / "c.jsonl", tiny_documents())
    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.02)
    in_memory = run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "a")
    capfd.readouterr()

    workers = run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "b",
                         beam_args=(f"--direct_running_mode={mode}", "--direct_num_workers=2"))

    lines = _lines(capfd.readouterr().err, "ingest")
    # The reporting thread runs, but the counting happens in the workers: nothing counted.
    assert all(line.startswith("[ingest] progress: 0/1 files, 0.0/") for line in lines), lines
    assert workers["splits"] == in_memory["splits"]
