"""Scheduled retraining through the CLI, as cron runs it: `lmpipe run` again and again on
one pipeline root while new files matching `data.inputs` arrive, with
`train.warm_start: latest_pushed`.

The runs, in order (each test reads what the earlier ones left behind):
  1. the tiny corpus: trained from scratch, blessed on the value gate, pushed as version 1,
     then again with nothing new: all cached (its own pushed model does not count as new);
  2. a second file arrives and the gate is set so it cannot pass (`max_perplexity: 1`):
     the new model warm-starts from version 1, keeps its tokenizer, is judged against it,
     refused, and version 1 stays in service;
  3. the default gate again: only evaluate and push re-run, the model of run 2 beats
     version 1 and is pushed as version 2, with a model card that traces it to its data;
  4. nothing new: everything is cached and serving is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.components.data_fixtures import document_texts
from tests.conftest import run_lmpipe, tiny_documents, tiny_raw_config, write_jsonl

pytestmark = pytest.mark.slow

FIRST, ARRIVING = 240, 120  # documents in the first file and in the one that arrives later
IMPOSSIBLE_GATE = "evaluation.max_perplexity=1.0"  # perplexity is never below 1


def _record(tmp: Path) -> dict:
    return json.loads((tmp / "root" / "latest_run.json").read_text())


def _read(directory: str, name: str) -> dict:
    return json.loads(Path(directory, name).read_text())


def _statuses(record: dict) -> dict[str, str]:
    return {name: entry["status"] for name, entry in record["components"].items()}


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _run(config: Path, *sets: str) -> dict:
    result = run_lmpipe("run", "--config", config, *(a for s in sets for a in ("--set", s)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return _record(config.parent)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The four runs; returns the temp dir, the config, each run's record and serving snapshots."""
    from pipeline.lock import RootLock

    tmp = tmp_path_factory.mktemp("retraining")
    corpus = tmp / "corpus"
    documents = tiny_documents(copies=30)  # the same kinds of sentence, 360 distinct texts
    write_jsonl(corpus / "part-000.jsonl", documents[:FIRST])
    raw = tiny_raw_config(tmp, corpus)
    raw["train"]["warm_start"] = "latest_pushed"
    config = tmp / "pipeline.yaml"
    config.write_text(yaml.safe_dump(raw))
    runs = {"first": _run(config)}
    served_after_first = _snapshot(tmp / "serving")
    runs["again"] = _run(config)

    # Cron fires while a run holds the root: the second process is refused, not queued.
    with RootLock(str(tmp / "root")):
        locked = run_lmpipe("run", "--config", config)
    after_lock = _record(tmp)

    write_jsonl(corpus / "part-001.jsonl", documents[FIRST:])
    runs["refused"] = _run(config, IMPOSSIBLE_GATE)
    served_after_refusal = _snapshot(tmp / "serving")
    runs["pushed"] = _run(config)
    runs["unchanged"] = _run(config)
    return {"tmp": tmp, "config": config, "runs": runs, "locked": locked, "after_lock": after_lock,
            "served_after_first": served_after_first, "served_after_refusal": served_after_refusal}


def _documents(record: dict) -> dict[str, set[str]]:
    """split -> texts of the run's ingested documents."""
    return document_texts(Path(record["components"]["ingest"]["outputs"]["documents"]))


def _train_summary(record: dict) -> dict:
    return _read(record["components"]["train"]["outputs"]["model"], "train_summary.json")


def _warm_start(record: dict) -> dict:
    return _train_summary(record)["warm_start"]


def test_first_run_trains_from_scratch_and_pushes_version_1(history):
    first, serving = history["runs"]["first"], history["tmp"] / "serving"
    assert set(_statuses(first).values()) <= {"executed", "skipped"}
    assert _warm_start(first)["requested"] == "latest_pushed"
    assert _warm_start(first)["source"] is None  # nothing was in service
    assert first["metrics"]["blessed"] is True and first["pushed_model"] == str(serving / "1")


def test_a_rerun_with_nothing_new_after_the_first_push_is_cached(history):
    again = history["runs"]["again"]
    assert {s for n, s in _statuses(again).items() if n != "tune"} == {"cached"}
    assert again["metrics"] == history["runs"]["first"]["metrics"]
    assert again["pushed_model"] == history["runs"]["first"]["pushed_model"]


def test_a_second_run_on_the_same_root_is_refused_by_the_lock(history):
    locked = history["locked"]
    assert locked.returncode == 1
    lines = locked.stderr.strip().splitlines()
    root = history["tmp"] / "root"
    assert lines[-1].startswith(f"lmpipe: error: pipeline root {root} is in use by pid ")
    assert lines[-1].endswith("not starting a second run on it")
    assert "Traceback" not in locked.stderr
    # The refused process touched nothing: the run before it is still the latest.
    assert history["after_lock"] == history["runs"]["again"]


def test_new_files_are_ingested_and_the_eval_split_stays_stable(history):
    first, grown = _documents(history["runs"]["first"]), _documents(history["runs"]["refused"])
    everything = {d["text"] for d in tiny_documents(copies=30)}
    assert grown["train"] | grown["eval"] == everything
    assert len(first["train"] | first["eval"]) == FIRST
    # Every document keeps its split as the corpus grows: no eval document becomes train.
    assert first["eval"] <= grown["eval"] and first["train"] <= grown["train"]
    assert not grown["train"] & first["eval"]
    assert len(grown["eval"]) > len(first["eval"])  # some new documents went to eval


def test_retraining_warm_starts_from_the_model_in_service_and_keeps_its_tokenizer(history):
    first, refused = history["runs"]["first"], history["runs"]["refused"]
    serving = history["tmp"] / "serving"
    assert _statuses(refused) == {name: ("skipped" if name == "tune" else "executed")
                                  for name in _statuses(first)}
    warm = _warm_start(refused)
    card = _read(str(serving / "1"), "model_card.json")
    assert (warm["source"], warm["version"]) == (str(serving / "1"), 1)
    assert warm["loaded"] == "saved_model"
    assert warm["model_sha256"] == card["model"]["saved_model_sha256"]
    # A warm-started model only understands version 1's token ids: the tokenizer is copied.
    tokenizers = [_train_summary(r)["tokenizer"] for r in (first, refused)]
    assert tokenizers[0]["sha256"] == tokenizers[1]["sha256"]
    assert tokenizers[0]["uri"] != tokenizers[1]["uri"]


def test_a_gate_that_cannot_pass_leaves_the_served_version_unchanged(history):
    refused = history["runs"]["refused"]
    verdict = _read(refused["components"]["evaluate"]["outputs"]["blessing"], "blessing.json")
    assert verdict["blessed"] is False and verdict["baseline"]["version"] == 1
    failed = {(f["metric"], f["slice"]) for f in verdict["failures"]}
    assert ("perplexity", "overall") in failed
    assert refused["metrics"]["blessed"] is False and refused["pushed_model"] is None
    assert history["served_after_refusal"] == history["served_after_first"]
    pushed = _read(refused["components"]["push"]["outputs"]["pushed"], "push.json")
    assert pushed["pushed"] is False and pushed["reason"].startswith("not blessed: perplexity")


def test_a_blessed_retrained_model_is_pushed_with_a_card_that_traces_it(history):
    first, refused, pushed = (history["runs"][k] for k in ("first", "refused", "pushed"))
    serving = history["tmp"] / "serving"
    # Only what the gate change touches runs again; the model of the refused run is reused.
    assert _statuses(pushed) == {"ingest": "cached", "tokenizer": "cached", "transform": "cached",
                                 "validate": "cached",
                                 "tune": "skipped", "train": "cached", "evaluate": "executed",
                                 "push": "executed"}
    model = pushed["components"]["train"]["outputs"]["model"]
    assert model == refused["components"]["train"]["outputs"]["model"]
    assert pushed["metrics"]["blessed"] is True and pushed["pushed_model"] == str(serving / "2")
    verdict = _read(pushed["components"]["evaluate"]["outputs"]["blessing"], "blessing.json")
    evaluation = _read(pushed["components"]["evaluate"]["outputs"]["evaluation"], "metrics.json")
    comparison = evaluation["comparison"]["bits_per_byte"]
    assert verdict["blessed"] is True and verdict["baseline"]["version"] == 1
    # Judged against version 1 scored on the same (grown) eval set, and better than it.
    assert comparison["baseline"] == evaluation["baseline"]["overall"]["bits_per_byte"]
    assert comparison["candidate"] == pytest.approx(pushed["metrics"]["eval_bits_per_byte"],
                                                    rel=1e-9)
    assert comparison["candidate"] < comparison["baseline"]

    card = _read(str(serving / "2"), "model_card.json")
    first_card = _read(str(serving / "1"), "model_card.json")
    assert card["run_id"] == pushed["run_id"]
    assert card["replaces"]["version"] == 1 and card["replaces"]["run_id"] == first["run_id"]
    assert card["replaces"]["saved_model_sha256"] == first_card["model"]["saved_model_sha256"]
    assert card["model"]["uri"] == model
    assert card["training"]["warm_start"]["version"] == 1
    outputs = pushed["components"]
    for name, component in (("documents", "ingest"), ("examples", "transform"),
                            ("tokenizer", "tokenizer")):
        assert card["data"][name]["uri"] == outputs[component]["outputs"][name]
        marker = _read(str(Path(card["data"][name]["uri"]).parent), "lmpipe_execution.json")
        assert card["data"][name]["fingerprint"] == marker["outputs"][name]["fingerprint"]
    raw = card["data_sources"]["raw"]
    corpus = history["tmp"] / "corpus"
    assert raw["files"] == [str(corpus / "part-000.jsonl"), str(corpus / "part-001.jsonl")]
    assert raw["sizes"] == [(corpus / n).stat().st_size
                            for n in ("part-000.jsonl", "part-001.jsonl")]
    grown = _documents(pushed)
    assert {s: v["documents"] for s, v in card["data_sources"]["splits"].items()} == {
        s: len(t) for s, t in grown.items()}
    assert first_card["data_sources"]["raw"]["files"] == [str(corpus / "part-000.jsonl")]
    assert first_card["data_sources"]["raw"]["fingerprint"] != raw["fingerprint"]


def test_a_run_with_nothing_new_is_cached_and_leaves_serving_alone(history):
    pushed, unchanged = history["runs"]["pushed"], history["runs"]["unchanged"]
    assert {s for n, s in _statuses(unchanged).items() if n != "tune"} == {"cached"}
    assert unchanged["metrics"] == pushed["metrics"]
    assert sorted(p.name for p in (history["tmp"] / "serving").iterdir()) == ["1", "2"]


def test_runs_shows_the_retraining_history(history):
    result = run_lmpipe("runs", "--config", history["config"])
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.strip().splitlines()
    assert header.split()[:12] == ["run", "started", "(UTC)", "status", "spans", "docs",
                                   "train/eval", "data", "ppl", "golden", "bpb", "task"]
    runs = history["runs"]
    order = ["unchanged", "pushed", "refused", "again", "first"]  # newest first
    assert [line.split()[0] for line in lines] == [runs[k]["run_id"] for k in order]
    for key, line in zip(order, lines):
        record, fields = runs[key], line.split()
        documents = _documents(record)
        stats = _read(record["components"]["ingest"]["outputs"]["documents"], "stats.json")
        size = stats["splits"]["train"]["bytes"] + stats["splits"]["eval"]["bytes"]
        run_id = record["run_id"]
        assert fields[1] == f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}"  # the run's UTC date
        # no data spans, no golden set: `-` in both columns
        assert fields[3:6] == ["succeeded", "-",
                               f"{len(documents['train'])}/{len(documents['eval'])}"]
        assert fields[6] == f"{size / 1000:.1f}kB"
        assert float(fields[7]) == pytest.approx(record["metrics"]["eval_perplexity"], abs=0.005)
        assert fields[8] == "-"
        assert float(fields[9]) == pytest.approx(record["metrics"]["eval_bits_per_byte"], abs=5e-4)
        assert fields[10] == "-"  # a language model: no task metric
    pushed_column = {key: line.split()[12] for key, line in zip(order, lines)}
    blessed_column = {key: line.split()[11] for key, line in zip(order, lines)}
    assert blessed_column == {"first": "yes", "again": "yes", "refused": "no", "pushed": "yes",
                              "unchanged": "yes"}
    assert pushed_column == {"first": "v1", "again": "(v1)", "refused": "-", "pushed": "v2",
                             "unchanged": "(v2)"}
    executed = {key: line.split()[13] for key, line in zip(order, lines)}
    everything = "ingest,tokenizer,transform,validate,train,evaluate,push"
    assert executed == {"first": everything, "again": "-", "refused": everything,
                        "pushed": "evaluate,push", "unchanged": "-"}
