"""Hyperband against random search at the same total token budget (run by hand).

For each seed, runs the `tune` component twice on the same examples, small model and
space: `random` with `max_trials` full trials, and `hyperband` (KerasTuner's brackets over
`max_units` token units, continuations resuming their parent's run), and reports for each
the best eval loss it reached and the tokens it had spent (cumulative, in trial order)
when its best-so-far first came within 2% of the best loss either of them reached.

First build the inputs (demo corpus, tokenizer, packed TFRecords) once:

    .venv/bin/python -m pipeline.demo_corpus --output /tmp/democorpus
    .venv/bin/lmpipe run --config pipeline.yaml --set 'data.inputs=["/tmp/democorpus/*.jsonl"]' \
        --set pipeline.root=/tmp/tunebench/root --until transform

then, with the same config and overrides:

    .venv/bin/python -m bench.tuning_budget --config pipeline.yaml \
        --set 'data.inputs=["/tmp/democorpus/*.jsonl"]' --set pipeline.root=/tmp/tunebench/root \
        --seeds 1 2 3 [--tokens-per-trial 200000] [--output /tmp/tunebench/result.json]

Sweeps go to a fresh scratch root. The inputs are read from the pipeline root's cache, or
given with `--examples DIR --tokenizer DIR` (to repeat a measurement on the same artifacts
after the data code changed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

WITHIN = 0.02
# The small model and the search space of the comparison (the same for both algorithms).
MODEL = ["model.num_layers=2", "model.hidden_dim=64", "model.num_heads=4"]
TRAIN = ["train.warmup_steps=0", "train.eval_batches=20"]
SPACE = '{"learning_rate": {"min": 1e-4, "max": 3e-1}, "batch_size": [8, 16, 32]}'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens-per-trial", type=int, default=200_000)
    parser.add_argument("--max-units", type=int, default=9)
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--space", default=SPACE, help="tuning.space as YAML/JSON")
    parser.add_argument("--output", help="write the measurements here (JSON)")
    parser.add_argument("--examples", help="an examples artifact to use instead of the cache's")
    parser.add_argument("--tokenizer", help="its tokenizer artifact (with --examples)")
    return parser.parse_args(argv)


def sweep(config, inputs: dict, root: str) -> list[dict]:
    """Run the tune component of `config` into `root`; its trial rows (trials.csv)."""
    import csv

    from components import tune
    from pipeline.artifacts import Artifact
    from pipeline.local_runner import Runtime

    out = os.path.join(root, "out")
    os.makedirs(out)
    artifacts = {name: Artifact(kind, inputs[name], name)
                 for name, kind in (("examples", "Examples"), ("tokenizer", "Tokenizer"))}
    tune.run(artifacts, {"hyperparameters": out}, Runtime(run_id="bench", root=root),
             **tune.SPEC.sections(config))
    with open(os.path.join(out, "trials.csv"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def curve(rows: list[dict]) -> list[tuple[int, float]]:
    """(cumulative tokens, best eval loss so far) after each trial, in trial order."""
    spent, best, points = 0, math.inf, []
    for row in rows:
        spent += int(row["tokens"] or 0)
        if row["status"] == "completed":
            best = min(best, float(row["eval_loss"]))
        points.append((spent, best))
    return points


def tokens_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    """Tokens spent when the best-so-far first came within `target`, None if never."""
    return next((tokens for tokens, best in points if best <= target), None)


def measure(config, inputs: dict) -> dict:
    """One sweep in a scratch root: trials, tokens, best loss, the best-so-far curve."""
    with tempfile.TemporaryDirectory(prefix=f"tunebench-{config.tuning.algorithm}-") as root:
        started = time.time()
        points = curve(sweep(config, inputs, root))
    return {"trials": len(points), "tokens": points[-1][0], "best": points[-1][1],
            "points": points, "seconds": round(time.time() - started, 1)}


def run_seed(base, overrides: list[str], inputs: dict, seed: int, args) -> dict:
    """Hyperband, then random search with as many full trials as Hyperband spent tokens."""
    from pipeline.configio import load_config

    common = [*overrides, *MODEL, *TRAIN, f"tuning.space={args.space}", "tuning.enabled=true",
              f"tuning.seed={seed}", f"tuning.tokens_per_trial={args.tokens_per_trial}",
              f"tuning.hyperband={{max_units: {args.max_units}, factor: {args.factor}}}"]
    hyperband = measure(load_config(base, [*common, "tuning.algorithm=hyperband",
                                           "tuning.max_trials=1000"]), inputs)
    trials = max(1, round(hyperband["tokens"] / args.tokens_per_trial))
    random = measure(load_config(base, [*common, "tuning.algorithm=random",
                                        f"tuning.max_trials={trials}"]), inputs)
    best = min(hyperband["best"], random["best"])
    target = best * (1 + WITHIN)
    for result in (hyperband, random):
        result["tokens_to_target"] = tokens_to_reach(result["points"], target)
    return {"seed": seed, "best_either": best, "target": target, "hyperband": hyperband,
            "random": random}


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline.configio import load_config
    from tuning.command import cached_inputs

    if args.examples:
        inputs = {"examples": args.examples, "tokenizer": args.tokenizer}
    else:
        config = load_config(args.config, [*args.set, *MODEL, "tuning.enabled=true"])
        inputs = cached_inputs(config, "tune", timeout=0)
    seeds = [run_seed(args.config, args.set, inputs, seed, args) for seed in args.seeds]
    print(report(seeds))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "seeds": seeds}, f, indent=2)
    return 0


def report(seeds: list[dict]) -> str:
    """The measurements as a table, with the token ratio per seed and over the seeds."""
    lines = [f"{'seed':>4}  {'algorithm':<9}  {'trials':>6}  {'tokens':>10}  {'best loss':>9}  "
             f"{'tokens to within 2%':>19}  {'seconds':>7}"]
    for result in seeds:
        for name in ("hyperband", "random"):
            r = result[name]
            reach = "never" if r["tokens_to_target"] is None else f"{r['tokens_to_target']:,}"
            lines.append(f"{result['seed']:>4}  {name:<9}  {r['trials']:>6}  {r['tokens']:>10,}  "
                         f"{r['best']:>9.4f}  {reach:>19}  {r['seconds']:>7.1f}")
        ratio = _ratio(result)
        lines.append(f"      hyperband / random tokens to within 2%: "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}'}")
    ratios = [r for r in map(_ratio, seeds) if r is not None]
    if ratios:
        lines.append(f"mean ratio over {len(ratios)} seed(s): {sum(ratios) / len(ratios):.2f}; "
                     f"median {sorted(ratios)[len(ratios) // 2]:.2f}")
    return "\n".join(lines)


def _ratio(result: dict) -> float | None:
    hyperband, random = result["hyperband"]["tokens_to_target"], result["random"]["tokens_to_target"]
    if hyperband is None or random is None:
        return None
    return hyperband / random


if __name__ == "__main__":
    sys.exit(main())
