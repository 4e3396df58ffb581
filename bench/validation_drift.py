"""Where `validation`'s default thresholds come from: drift between spans of the demo corpus.

Spans are subsets of the demo corpus (`pipeline/demo_corpus.py`), each ingested and
transformed alone with one tokenizer trained on the whole corpus, and compared as the
validate stage compares a span with the one before it (`components/validate/checks.py`):

    random halves (5 seeds), random tenths   the same source: what sampling noise gives
    file-order halves, file-order tenths     other standard-library modules: a change of
                                             source (the domain mix moves)
    a random half against the other half     a real length change (a scraper that loses
    cut to each document's first paragraph   everything after the first blank line)

    python -m bench.validation_drift [--work /tmp/validation-drift]

Prints one JSON object: L-infinity distance of the domain shares and Jensen-Shannon
divergence of the length histograms per comparison (min, median, max over adjacent pairs
for tenths). Takes about a minute and a half on two cores.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

BEAM_ARGS = ("--direct_running_mode=in_memory",)


def _stages(raw_dir: Path, work: Path, tokenizer_dir: Path | None) -> Path:
    """ingest (+ tokenizer when `tokenizer_dir` is None) + transform; returns the statistics
    directory."""
    from components import ingest, tokenizer, transform
    from pipeline.core.artifacts import Artifact
    from pipeline.core.config import DataConfig, TaskConfig, TokenizerConfig, TransformConfig
    from pipeline.local_runner import Runtime

    data = DataConfig(inputs=(str(raw_dir),), domain_field="domain", eval_fraction=0.05)
    outputs = {name: work / name for name in ("documents", "golden", "tokenizer", "examples",
                                               "statistics")}
    for path in outputs.values():
        path.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(run_id="bench", root=str(work), beam_args=BEAM_ARGS)
    ingest.run({"raw": ingest.resolve_raw(SimpleNamespace(data=data), {})},
               {name: str(outputs[name]) for name in ("documents", "golden")}, runtime, data)
    documents = Artifact("Documents", str(outputs["documents"]), "d")
    if tokenizer_dir is None:
        tokenizer_dir = outputs["tokenizer"]
        tokenizer.run({"documents": documents}, {"tokenizer": str(tokenizer_dir)}, runtime,
                      TokenizerConfig(vocab_size=4000))
    transform.run({"documents": documents,
                   "tokenizer": Artifact("Tokenizer", str(tokenizer_dir), "t")},
                  {name: str(outputs[name]) for name in ("examples", "statistics")}, runtime,
                  data=data, transform=TransformConfig(sequence_length=128), task=TaskConfig())
    return outputs["statistics"]


def _span(work: Path, name: str, records: list[dict], tokenizer_dir: Path):
    """The validation profile of `records` as a span of their own."""
    from components.validate.profiles import profile

    raw = work / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    statistics = _stages(raw, work / name, tokenizer_dir)
    return profile(json.loads((statistics / "stats.json").read_text()))


def _distances(before, after) -> dict:
    from components.validate.checks import measurements

    found = measurements(after, before)
    return {"domain_l_infinity": found["domain_l_infinity"],
            "length_js_divergence": found["length_js_divergence"]}


def _spread(pairs: list[dict]) -> dict:
    return {key: {"min": min(p[key] for p in pairs),
                  "median": sorted(p[key] for p in pairs)[len(pairs) // 2],
                  "max": max(p[key] for p in pairs)} for key in pairs[0]}


def measure(work: Path) -> dict:
    """Every comparison of the module docstring."""
    corpus = work / "corpus"
    subprocess.run([sys.executable, "-m", "pipeline.demo_corpus", "--output", str(corpus)],
                   check=True, stdout=subprocess.DEVNULL)
    tokenizer_dir = _stages(corpus, work / "whole", None).parent / "tokenizer"
    records = [json.loads(line) for path in sorted(corpus.glob("*.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines()]
    results = {}
    for seed in range(5):
        order = random.Random(seed).sample(range(len(records)), len(records))
        halves = [sorted(order[:len(order) // 2]), sorted(order[len(order) // 2:])]
        spans = [_span(work, f"random{seed}-{k}", [records[i] for i in half], tokenizer_dir)
                 for k, half in enumerate(halves)]
        results[f"random halves, seed {seed}"] = _distances(*spans)
        if seed == 0:
            cut = [dict(records[i], text=records[i]["text"].split("\n\n")[0])
                   for i in halves[1]]
            results["random half, other half cut to its first paragraph"] = _distances(
                spans[0], _span(work, "random0-cut", cut, tokenizer_dir))
    half = len(records) // 2
    results["file-order halves"] = _distances(
        _span(work, "order-0", records[:half], tokenizer_dir),
        _span(work, "order-1", records[half:], tokenizer_dir))
    for kind in ("random", "file-order"):
        order = (random.Random(0).sample(range(len(records)), len(records)) if kind == "random"
                 else list(range(len(records))))
        tenth = len(order) // 10
        spans = [_span(work, f"{kind}-tenth-{k}",
                       [records[i] for i in sorted(order[k * tenth:(k + 1) * tenth])],
                       tokenizer_dir) for k in range(10)]
        results[f"{kind} tenths ({tenth} records each), adjacent pairs"] = _spread(
            [_distances(spans[k - 1], spans[k]) for k in range(1, 10)])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/validation-drift"))
    args = parser.parse_args()
    print(json.dumps(measure(args.work), indent=1))


if __name__ == "__main__":
    main()
