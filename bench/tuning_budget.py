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
        --seeds 1 2 3 [--space lr_batch|full] [--tokens-per-trial 200000] \
        [--output /tmp/tunebench/result.json]

Seeds can run in parallel processes (tokens, not seconds, are compared), each with its own
`--output`; `--combine FILE...` prints the report over them. Many more seeds, cheaply:
`bench/tuning_replay.py`. docs/tuning.md has the results.

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
# The search spaces, fixed before measuring. `lr_batch` is the two keys every sweep tunes;
# `full` adds every optional key the tuning issue names, at ranges a first sweep of a
# small LM would use (warm-up in steps of the trial's batch: a full trial at batch 32 is
# 49 steps).
SPACES = {
    "lr_batch": '{"learning_rate": {"min": 1e-4, "max": 3e-1}, "batch_size": [8, 16, 32]}',
    "full": '{"learning_rate": {"min": 1e-4, "max": 3e-1}, "batch_size": [8, 16, 32], '
            '"warmup_steps": [0, 10, 30], "weight_decay": {"min": 0.0, "max": 0.1, '
            '"sampling": "linear"}, "optimizer": ["adamw", "lion"], '
            '"num_layers": [1, 2, 4], "hidden_dim": [32, 64, 128]}',
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens-per-trial", type=int, default=200_000)
    parser.add_argument("--max-units", type=int, default=9)
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--sampler", default="random", choices=("random", "quasi_random"),
                        help="tuning.sampler of both sweeps (the recorded ones: random)")
    parser.add_argument("--space", default="lr_batch",
                        help=f"a named space ({', '.join(SPACES)}) or tuning.space as YAML/JSON")
    parser.add_argument("--output", help="write the measurements here (JSON)")
    parser.add_argument("--examples", help="an examples artifact to use instead of the cache's")
    parser.add_argument("--tokenizer", help="its tokenizer artifact (with --examples)")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="only print the report over these --output files")
    args = parser.parse_args(argv)
    if not args.combine and not args.config:
        parser.error("--config is required (unless --combine)")
    return args


def sweep(config, inputs: dict, root: str) -> list[dict]:
    """Run the tune component of `config` into `root`; its trial rows (trials.csv)."""
    import csv

    from components import tune
    from pipeline.core.artifacts import Artifact
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
    from pipeline.core.configio import load_config

    space = SPACES.get(args.space, args.space)
    # Diverging configurations are part of a wide space; a failure streak must not end
    # one algorithm's sweep early and leave it a smaller budget than the other's.
    common = [*overrides, *MODEL, *TRAIN, f"tuning.space={space}", "tuning.enabled=true",
              "tuning.max_consecutive_failed_trials=1000",
              f"tuning.seed={seed}", f"tuning.tokens_per_trial={args.tokens_per_trial}",
              f"tuning.sampler={args.sampler}",
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
    if args.combine:
        print(combine(args.combine))
        return 0
    from pipeline.core.configio import load_config
    from pipeline.tune_command import cached_inputs

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
    """The measurements as a table, with the token ratio per seed and over all seeds.

    A sweep that never came within 2% within the common budget counts with its whole
    budget: the true figure is larger, so the ratio printed is a bound (`<=` when random
    search never got there, `>=` when Hyperband did not).
    """
    lines = [f"{'seed':>4}  {'algorithm':<9}  {'trials':>6}  {'tokens':>10}  {'best loss':>9}  "
             f"{'tokens to within 2%':>19}  {'seconds':>7}"]
    for result in seeds:
        for name in ("hyperband", "random"):
            r = result[name]
            reached = ("never" if r["tokens_to_target"] is None
                       else f"{r['tokens_to_target']:,}")
            lines.append(f"{result['seed']:>4}  {name:<9}  {r['trials']:>6}  {r['tokens']:>10,}  "
                         f"{r['best']:>9.4f}  {reached:>19}  {r['seconds']:>7.1f}")
        lines.append(f"      hyperband / random tokens to within 2%: "
                     f"{show_ratio(*reach(result['hyperband']), *reach(result['random']))}")
    if len(seeds) > 1:
        lines.append(f"all {len(seeds)} seeds (summed tokens): {summed_ratio(seeds)}")
    return "\n".join(lines)


def summed_ratio(seeds: list[dict]) -> str:
    """Hyperband's tokens to within 2% over random search's, each summed over the seeds."""
    hyperband = [reach(result["hyperband"]) for result in seeds]
    random = [reach(result["random"]) for result in seeds]
    return show_ratio(sum(t for t, _ in hyperband), any(c for _, c in hyperband),
                      sum(t for t, _ in random), any(c for _, c in random))


def reach(sweep: dict) -> tuple[int, bool]:
    """(tokens to within 2%, whether that is only the sweep's whole budget)."""
    if sweep["tokens_to_target"] is None:
        return sweep["tokens"], True
    return sweep["tokens_to_target"], False


def show_ratio(hyperband: int, hyperband_never: bool, random: int, random_never: bool) -> str:
    if hyperband_never and random_never:
        return "n/a (each sweep missed the band in some seed: no bound)"
    bound = "<= " if random_never else ">= " if hyperband_never else ""
    return f"{bound}{hyperband / random:.2f}"


def combine(paths: list[str]) -> str:
    """The report over the seeds of several `--output` files (seeds run in parallel)."""
    seeds = []
    for path in paths:
        seeds.extend(read_json(path, "seeds")["seeds"])
    return report(sorted(seeds, key=lambda result: result["seed"]))


def read_json(path: str, *keys: str) -> dict:
    """A measurements file with `keys`; a usage error (one line, exit 2) if it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        fail(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})")
    missing = [key for key in keys if not isinstance(data, dict) or key not in data]
    if missing:
        fail(f"{path}: not a file this benchmark wrote (no {', '.join(missing)})")
    return data


def fail(message: str):
    """Stop with a one-line usage error, exit status 2."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    quiet_script()
    sys.exit(main())
