"""Scheduled retraining with data spans against today's whole-corpus reprocessing.

Ten daily spans of about 5 MB each (Python source on this machine, `bench/data_corpus.py`)
arrive one after the other; after each, the pipeline retrains (`lmpipe run`, the real path
in a fresh process, `train.warm_start: latest_pushed`) on two roots:

    spans   `data.inputs: [<days>/day-{SPAN}]`: every span found, each ingested and
            transformed once (cached per span)
    whole   `data.inputs: [<corpus>/*.jsonl]`, one file more per day: today's behaviour,
            where a new file changes ingest's cache key and the data stage reruns in full

Both evaluate a fixed golden set (`evaluation.golden_inputs`, held out of every day) and
the eval split. Retrain k of each is run alternately (spans first on odd k, whole first on
even k), so both see the same load. Prints, per k, the data-stage seconds (ingest,
tokenizer, transform, validate: each step's seconds from `latest_run.json`) and the whole
run's wall seconds, the golden and eval perplexity; then the ratio the goal is about:
spans' data stage at retrain 10 over retrain 2.

    python -m bench.span_retraining --work /tmp/lmpipe-spans [--days 10] [--megabytes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA_STEPS = ("ingest", "tokenizer", "labels", "transform", "validate")
GOLDEN_DOCUMENTS = 300


def split_days(corpus: Path, work: Path, days: int) -> tuple[list[list[str]], Path]:
    """The corpus's documents in a fixed random order, cut into `days` days and a golden
    set (the first `GOLDEN_DOCUMENTS`, in no day): every day a sample of the same source,
    as daily deliveries of one feed are (the corpus file itself is ordered by source file,
    and the data validation rightly stops a run whose new span is another source)."""
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    golden = work / "golden.jsonl"
    golden.write_text("".join(lines[:GOLDEN_DOCUMENTS]), encoding="utf-8")
    rest = lines[GOLDEN_DOCUMENTS:]
    size = len(rest) // days
    return [rest[k * size:(k + 1) * size] for k in range(days)], golden


def config(work: Path, mode: str, golden: Path, steps: int) -> Path:
    """The demo's pipeline with this mode's inputs, a warm start and a golden set."""
    raw = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    inputs = str(work / "days" / "day-{SPAN}") if mode == "spans" else str(work / "whole" / "*.jsonl")
    raw["pipeline"].update(name=f"spans-bench-{mode}", root=str(work / mode / "root"))
    raw["data"]["inputs"] = [inputs]
    raw["train"].update(steps=steps, warm_start="latest_pushed", eval_every=steps,
                        warmup_steps=min(raw["train"]["warmup_steps"], steps // 5))
    raw["evaluation"]["golden_inputs"] = [str(golden)]
    raw["push"]["serving_dir"] = str(work / mode / "serving")
    path = work / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def retrain(config_path: Path) -> dict:
    """One `lmpipe run`: its record, with the wall seconds of the whole process."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config",
                             str(config_path)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - started
    root = Path(yaml.safe_load(config_path.read_text())["pipeline"]["root"])
    if result.returncode != 0:
        sys.exit(f"{config_path.name}: lmpipe run failed:\n{result.stderr[-3000:]}")
    record = json.loads((root / "latest_run.json").read_text())
    record["wall_seconds"] = seconds
    return record


def data_seconds(record: dict) -> float:
    return sum(entry["seconds"] for name, entry in record["components"].items()
               if name in DATA_STEPS)


def row(k: int, records: dict) -> str:
    cells = [f"{k:>2}"]
    for mode in ("spans", "whole"):
        record = records[mode]
        metrics = record["metrics"]
        cells += [f"{data_seconds(record):7.1f}", f"{record['wall_seconds']:7.1f}",
                  f"{metrics['golden_perplexity']:8.2f}", f"{metrics['eval_perplexity']:8.2f}"]
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> int:
    from bench import data_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--megabytes", type=float, default=5.0, help="per day")
    parser.add_argument("--steps", type=int, default=100, help="training steps per retrain")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    facts = data_corpus.build(args.work / "corpus", args.megabytes * args.days + 1,
                              lines_per_document=40)
    print(f"corpus: {facts}", file=sys.stderr)
    days, golden = split_days(args.work / "corpus" / "corpus.jsonl", args.work, args.days)
    configs = {mode: config(args.work, mode, golden, args.steps) for mode in ("spans", "whole")}
    print(" k | spans: data s |  wall s | golden ppl | eval ppl | whole: data s |  wall s "
          "| golden ppl | eval ppl")
    history = []
    for k, lines in enumerate(days, start=1):
        for directory in (args.work / "days" / f"day-{k}", args.work / "whole"):
            directory.mkdir(parents=True, exist_ok=True)
        (args.work / "days" / f"day-{k}" / "part.jsonl").write_text("".join(lines))
        (args.work / "whole" / f"day-{k:02d}.jsonl").write_text("".join(lines))
        order = ("spans", "whole") if k % 2 else ("whole", "spans")
        records = {mode: retrain(configs[mode]) for mode in order}
        history.append(records)
        print(row(k, records), flush=True)
    if len(history) >= 10:
        spans = [data_seconds(r["spans"]) for r in history]
        whole = [data_seconds(r["whole"]) for r in history]
        print(f"spans data stage, retrain 10 / retrain 2: {spans[9] / spans[1]:.2f}x "
              f"(goal <= 1.3x); whole corpus: {whole[9] / whole[1]:.2f}x")
    (args.work / "history.json").write_text(json.dumps(history, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
