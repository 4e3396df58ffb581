"""Hyperband against random search over many seeds, replayed on a table of real trials.

A real sweep pair (`bench/tuning_budget.py`) costs about ten minutes per seed on this
machine, and one seed's token ratio swings between 0.3 and 1.2: four seeds cannot tell
the algorithms apart. This benchmark trains once and replays many times, the way tabular
HPO benchmarks (HPOBench, LCBench) do:

1. `table`: draws configurations from the search space (KerasTuner's own sampling,
   seeded) and trains each through the tuner's own trial code along Hyperband's longest
   chain: 1 unit, continued to 3, continued to 9 (for `max_units` 9, `factor` 3; on to
   27 for `max_units` 27), with the eval loss at every rung. A promoted Hyperband trial is
   exactly its parent's run continued (`tests/tuning/test_sweep.py` checks it to the last
   digit), so these are the numbers any Hyperband rung of these configurations measures,
   and the last one is what a random-search trial of it measures.
2. `replay`: drives our own oracles (`tuning.tuner.make_oracle`: KerasTuner's Hyperband
   and random search with their real brackets, promotions and duplicate avoidance) over
   the table, with one `Choice` hyperparameter, the table's row, and scores looked up
   instead of trained. Per seed: Hyperband to its end, random search with as many full
   trials as Hyperband spent tokens, and the tokens each spent when its best-so-far first
   came within 2% of the best either reached (as `bench/tuning_budget.py` counts them);
   then both going on past that budget, so that a sweep that missed the band within it is
   measured rather than bounded. `--max-units` replays a smaller Hyperband on a larger
   one's table (its rungs are among the table's), `--iterations` more of its brackets.
   `--sampler` lets both oracles sample the space itself (`tuning.sampler`), each trial
   scoring as the table row nearest to its values (a nearest-neighbour surrogate).
3. `samplers`: random search alone, with independent and with quasi-random draws over the
   same seeds: the best loss each reaches after a few full trials.

The replay samples from the table's configurations, not from the continuous space: with
a few dozen rows it measures the algorithms on a space as varied as the real one, and
each seed sees a different draw of them.

    # the table, split over two processes (the rows of part i of k), then the replay
    .venv/bin/python -m bench.tuning_replay table --config pipeline.yaml \\
        --set 'data.inputs=["/tmp/democorpus/*.jsonl"]' --set pipeline.root=/tmp/tunebench/root \\
        --space full --rows 48 --part 1/2 --output /tmp/tunebench/table-full-1.json
    .venv/bin/python -m bench.tuning_replay replay /tmp/tunebench/table-full-*.json --seeds 200

A table grows with more rows of its seed: `table --rows 96 --first-row 48 ...` trains rows
48-95 only (the first 48 of a 96-row draw are the 48-row table's), and `replay` takes the
old parts and the new ones together.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import sys
import tempfile
import time

from bench import tuning_budget
from bench.tuning_budget import MODEL, SPACES, TRAIN

FAILED = "failed"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="train the table's configurations")
    table.add_argument("--config", required=True)
    table.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    table.add_argument("--space", default="full",
                       help=f"a named space ({', '.join(SPACES)}) or tuning.space as YAML/JSON")
    table.add_argument("--rows", type=int, default=48, help="configurations in the whole table")
    table.add_argument("--first-row", type=int, default=0,
                       help="train rows from this one on: a table of fewer rows and the same "
                            "seed holds the ones before (its configurations are a prefix)")
    table.add_argument("--part", default=(1, 1), type=_part,
                       help="i/k: train the i-th of k slices of rows")
    table.add_argument("--table-seed", type=int, default=1, help="seeds the configurations")
    table.add_argument("--tokens-per-trial", type=int, default=200_000)
    table.add_argument("--max-units", type=int, default=9)
    table.add_argument("--factor", type=int, default=3)
    table.add_argument("--examples", help="an examples artifact to use instead of the cache's")
    table.add_argument("--tokenizer", help="its tokenizer artifact (with --examples)")
    table.add_argument("--output", required=True, help="the table part (JSON)")
    replay = commands.add_parser("replay", help="replay both algorithms over a table")
    replay.add_argument("tables", nargs="+", help="the parts `table` wrote")
    replay.add_argument("--seeds", type=_positive, default=200, help="seeds 1, 1001, 2001, ...")
    replay.add_argument("--max-units", type=_positive,
                        help="replay a smaller Hyperband on the table (9 on a 27-unit table: "
                             "its rungs at 3, 9 and 27 units); default: the table's")
    replay.add_argument("--factor", type=_positive,
                        help="Hyperband's reduction factor (9 or 27 on a 27-unit table of "
                             "factor 3); default: the table's")
    replay.add_argument("--iterations", type=_positive, default=1,
                        help="Hyperband's iterations (random search gets as many tokens)")
    replay.add_argument("--sampler", choices=("random", "quasi_random"),
                        help="both sample the table's space this way (`tuning.sampler`) and "
                             "each trial takes the row nearest to its values; default: they "
                             "draw rows")
    samplers = commands.add_parser(
        "samplers", help="random search with independent draws against quasi-random ones")
    samplers.add_argument("tables", nargs="+", help="the parts `table` wrote")
    samplers.add_argument("--trials", type=_positive, nargs="+", default=[8, 14],
                          help="random search's budgets, in full trials")
    samplers.add_argument("--seeds", type=_positive, default=200,
                          help="seeds 1, 1001, 2001, ...")
    args = parser.parse_args(argv)
    if args.command == "table" and not 0 <= args.first_row < args.rows:
        parser.error(f"argument --first-row: expected 0..{args.rows - 1} (--rows {args.rows}), "
                     f"got {args.first_row}")
    return args


def _positive(text: str) -> int:
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _part(text: str) -> tuple[int, int]:
    index, _, parts = text.partition("/")
    if not (index.isdigit() and parts.isdigit() and 1 <= int(index) <= int(parts)):
        raise argparse.ArgumentTypeError(f"expected i/k with 1 <= i <= k, got {text!r}")
    return int(index), int(parts)


# ---------------------------------------------------------------------------- table


def draw_configurations(space, rows: int, seed: int) -> list[dict]:
    """`rows` configurations from `space` (`SearchSpaceConfig`), by KerasTuner's own
    per-hyperparameter sampling."""
    from tuning import space as tuning_space

    hp = tuning_space.hyperparameters(space)
    draw = random.Random(seed)
    return [{p.name: p.random_sample(draw.randint(0, 2**31)) for p in hp.space}
            for _ in range(rows)]


def rung_units(max_units: int, factor: int) -> list[int]:
    """The units Hyperband's rungs train to: 1, 3, 9 for max_units 9 and factor 3."""
    units = {max_units}
    while max_units > 1:
        max_units = math.ceil(max_units / factor)
        units.add(max_units)
    return sorted(units)


def train_chain(hypermodel, values: dict, units: list[int], scratch: str) -> dict:
    """Train one configuration along the chain of rungs, each continuing the last.

    Returns:
        {"values", "tokens_per_step", "steps": {units: step}, "loss": {units: eval loss or
        "failed"}, "failed_tokens": tokens a fresh run spends before it fails (or None)}.
    """
    import keras_tuner

    from tuning.budget import EPOCHS, INITIAL_EPOCH, PARENT
    from tuning.trial import TrialFailed

    row = {"values": values, "steps": {}, "loss": {}, "failed_tokens": None}
    previous, spent = 0, 0
    for unit in units:
        trial_values = {**values, EPOCHS: unit, INITIAL_EPOCH: previous}
        if previous:
            trial_values[PARENT] = str(previous)
        plan = hypermodel.plan(trial_values)
        row["tokens_per_step"] = plan.tokens_per_step
        row["steps"][unit] = plan.stop_step
        hp = keras_tuner.HyperParameters()
        hp.values.update(trial_values)
        checkpoint_in = os.path.join(scratch, str(previous)) if previous else None
        try:
            outcome = hypermodel.fit(hp, hypermodel.build(hp), checkpoint_in=checkpoint_in,
                                     checkpoint_out=os.path.join(scratch, str(unit)))
        except TrialFailed as err:
            row["failed_tokens"] = spent + err.tokens
            row["loss"].update({u: FAILED for u in units if u >= unit})
            return row
        spent += plan.tokens
        row["loss"][unit] = outcome.eval_loss
        previous = unit
    return row


def build_table(args) -> dict:
    """Train this part's rows; the table part with everything the replay needs to know."""
    from pipeline.core.configio import load_config
    from tuning.budget import TokenBudget
    from tuning.hypermodel import LmHyperModel
    from tuning.trial import make_context

    space = SPACES.get(args.space, args.space)
    config = load_config(args.config, [*args.set, *MODEL, *TRAIN, f"tuning.space={space}",
                                       "tuning.enabled=true"])
    if args.examples:
        inputs = {"examples": args.examples, "tokenizer": args.tokenizer}
    else:
        from pipeline.tune_command import cached_inputs
        inputs = cached_inputs(config, "tune", timeout=0)
    index, parts = args.part
    configurations = draw_configurations(config.tuning.space, args.rows, args.table_seed)
    mine = list(range(args.first_row, args.rows))[index - 1::parts]
    context = make_context(inputs["examples"], inputs["tokenizer"], config.task, config.train)
    hypermodel = LmHyperModel(context, config.train, config.model,
                              TokenBudget(args.tokens_per_trial, args.max_units))
    units = rung_units(args.max_units, args.factor)
    part = {"space": space, "rows": args.rows, "table_seed": args.table_seed,
            "tokens_per_trial": args.tokens_per_trial, "max_units": args.max_units,
            "factor": args.factor, "table": {}}
    for number in mine:
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="tunereplay-") as scratch:
            row = train_chain(hypermodel, configurations[number], units, scratch)
        part["table"][number] = row
        # Written after every row: a long build that stops keeps what it trained.
        _write_json(part, args.output)
        losses = ", ".join(f"{u}: {_show(v)}" for u, v in row["loss"].items())
        print(f"row {number}: {losses} ({time.time() - started:.0f}s)", file=sys.stderr)
    return part


def _write_json(document: dict, path: str) -> None:
    with open(path + ".partial", "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
    os.replace(path + ".partial", path)


def _show(loss) -> str:
    return loss if loss == FAILED else f"{loss:.4f}"


# --------------------------------------------------------------------------- replay


def load_tables(paths: list[str]) -> tuple[dict, list[dict]]:
    """The parts' common settings and all their rows, in row order (JSON keys are text).

    Parts of a table and of its extension (`--first-row`) differ in their `rows` only:
    the table has the most rows any part names."""
    settings, rows, count = None, {}, 0
    for path in paths:
        part = tuning_budget.read_json(path, "table", "rows", "tokens_per_trial", "max_units",
                                       "factor")
        table = part.pop("table")
        count = max(count, part.pop("rows"))
        if settings not in (None, part):
            tuning_budget.fail(f"{path}: another space, budget or table seed than the first part")
        settings = part
        rows.update(table)
    if sorted(map(int, rows)) != list(range(count)):
        tuning_budget.fail(f"the parts hold rows {sorted(map(int, rows))}, expected "
                           f"0..{count - 1}")
    return {**settings, "rows": count}, [_row(rows[str(n)]) for n in range(count)]


def _row(row: dict) -> dict:
    return {**row, "steps": {int(u): s for u, s in row["steps"].items()},
            "loss": {int(u): v for u, v in row["loss"].items()}}


def coarsen(settings: dict, table: list[dict], max_units: int,
            factor: int | None = None) -> tuple[dict, list[dict]]:
    """The table as a Hyperband with `max_units` units of the same full budget and
    reduction `factor` (default: the table's) sees it.

    A table trained along the rungs of `max_units` 27 (1, 3, 9, 27 units of 22,222 tokens)
    holds those of `max_units` 9 too (3, 9, 27 of them are 1, 3, 9 units of 66,666), to the
    step: `TokenBudget.steps` rounds `units * tokens_per_trial / max_units` the same way;
    and those of factor 9 (1, 3, 27) or 27 (1, 27) with 27 units.
    """
    factor = factor or settings["factor"]
    scale, rest = divmod(settings["max_units"], max_units)
    kept = {u for u in rung_units(max_units, factor)}
    if rest or any(u * scale not in table[0]["steps"] for u in kept):
        tuning_budget.fail(f"--max-units {max_units} --factor {factor}: the table's rungs "
                           f"{sorted(table[0]['steps'])} of {settings['max_units']} units "
                           "do not hold its rungs")
    rows = [{**row, "steps": {u: row["steps"][u * scale] for u in kept},
             "loss": {u: row["loss"][u * scale] for u in kept}} for row in table]
    return {**settings, "max_units": max_units, "factor": factor}, rows


def make_oracle(settings: dict, algorithm: str, seed: int, max_trials: int,
                iterations: int = 1, sampler: str | None = None):
    """Our oracle for `algorithm` (Hyperband with `iterations` rounds of its brackets).

    Without `sampler` it searches over the table's rows (exact lookups); with one it
    samples the table's space itself that way (`tuning.sampler`), and each trial gets the
    row nearest to its values (`nearest_row`)."""
    import keras_tuner

    from pipeline.core.config import TuningConfig
    from pipeline.core.configio import build
    from tuning import tuner

    tuning = build(TuningConfig, {
        "enabled": True, "algorithm": algorithm, "seed": seed, "max_trials": max_trials,
        # Without a sampler, the rows are drawn as the recorded replays drew them.
        "sampler": sampler or "random",
        **({"space": json.loads(settings["space"])} if sampler else {}),
        "max_consecutive_failed_trials": 10**6, "tokens_per_trial": settings["tokens_per_trial"],
        "hyperband": {"max_units": settings["max_units"], "factor": settings["factor"],
                      "iterations": iterations}},
        "tuning")
    oracle = tuner.make_oracle(tuning, "eval_loss")
    if sampler is None:
        rows = keras_tuner.HyperParameters()
        rows.Choice("row", list(range(settings["rows"])))
        oracle.hyperparameters = rows  # the space is the table's rows, not the config's
    return oracle


def nearest_row(table: list[dict], hyperparameters):
    """A function from a trial's values to the index of the table row nearest to them,
    each hyperparameter's range scaled to [0, 1] as KerasTuner samples it (log ranges on
    a log scale)."""
    space = hyperparameters.space

    def position(values: dict) -> list[float]:
        return [p.value_to_prob(values[p.name]) for p in space]

    positions = [position(row["values"]) for row in table]

    def lookup(values: dict) -> int:
        here = position(values)
        return min(range(len(table)), key=lambda n: sum(
            (a - b) ** 2 for a, b in zip(here, positions[n])))
    return lookup


def run_oracle(oracle, table: list[dict], full_units: int, directory: str) -> list[dict]:
    """Drive `oracle` to its end, looking scores up; rows as `trials.csv` has them."""
    oracle._set_project_dir(directory, "replay")
    if "row" in oracle.hyperparameters:
        def lookup(values):
            return values["row"]
    else:
        lookup = nearest_row(table, oracle.hyperparameters)
    # KerasTuner prints a banner per trial to stdout; the summary is what matters here.
    with contextlib.redirect_stdout(io.StringIO()):
        return _drive(oracle, table, full_units, lookup)


def _drive(oracle, table: list[dict], full_units: int, lookup) -> list[dict]:
    from keras_tuner.engine.trial import TrialStatus

    from tuning.budget import EPOCHS, INITIAL_EPOCH, PARENT

    done = []
    while (trial := oracle.create_trial("replay")).status == "RUNNING":
        values = trial.hyperparameters.values
        row = table[lookup(values)]
        units = values.get(EPOCHS, full_units)
        parent = values.get(PARENT)
        start = row["steps"][values.get(INITIAL_EPOCH, 0)] if parent else 0
        loss = row["loss"][units]
        parent_failed = parent is not None and oracle.trials[parent].status == TrialStatus.FAILED
        if parent_failed:
            tokens = 0  # the tuner fails a failed trial's continuation without training
        elif loss == FAILED:
            tokens = row["failed_tokens"] - start * row["tokens_per_step"]
        else:
            tokens = (row["steps"][units] - start) * row["tokens_per_step"]
        if parent_failed or loss == FAILED:
            trial.status = TrialStatus.FAILED
            done.append({"status": FAILED, "tokens": max(tokens, 0), "eval_loss": ""})
        else:
            oracle.update_trial(trial.trial_id, {"eval_loss": loss})
            trial.status = TrialStatus.COMPLETED
            done.append({"status": "completed", "tokens": tokens, "eval_loss": loss})
        oracle.end_trial(trial)
    return done


def replay_seed(settings: dict, table: list[dict], seed: int, iterations: int = 1,
                sampler: str | None = None) -> dict:
    """Hyperband (`iterations` rounds of its brackets), then random search at the same
    budget, as `tuning_budget.run_seed`.

    Both then go on past the common budget (free here), so that the tokens each needs to
    come within 2% are known even when the budget ran out first
    (`tokens_to_target_uncapped`, None if still not there): random search over the rest of
    the table, Hyperband through one more iteration of its brackets (the first n iterations
    of an n + 1 iteration sweep are the n-iteration sweep, trial for trial).
    """
    from tuning.budget import bracket_trials, hyperband_trials

    full, factor = settings["max_units"], settings["factor"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="tunereplay-") as directory:
        hyperband_on = run_oracle(make_oracle(settings, "hyperband", seed, 10**6,
                                              iterations=iterations + 1, sampler=sampler),
                                  table, full, os.path.join(directory, "hyperband"))
        hyperband = hyperband_on[:hyperband_trials(full, factor, iterations)]
        spent = sum(r["tokens"] for r in hyperband)
        trials = max(1, round(spent / settings["tokens_per_trial"]))
        random_on = run_oracle(make_oracle(settings, "random", seed, settings["rows"],
                                           sampler=sampler),
                               table, full, os.path.join(directory, "random"))
    going_on = {"hyperband": hyperband_on, "random": random_on}
    for name, rows in (("hyperband", hyperband), ("random", random_on[:trials])):
        points = tuning_budget.curve(rows)
        results[name] = {"trials": len(points), "tokens": points[-1][0], "best": points[-1][1],
                         "points": points, "seconds": 0.0}
    best = min(results["hyperband"]["best"], results["random"]["best"])
    target = best * (1 + tuning_budget.WITHIN)
    for name, result in results.items():
        result["tokens_to_target"] = tuning_budget.tokens_to_reach(result["points"], target)
        points_on = tuning_budget.curve(going_on[name])
        result["tokens_to_target_uncapped"] = tuning_budget.tokens_to_reach(points_on, target)
        result["tokens_going_on"] = points_on[-1][0]
    # Hyperband's earliest arrival: the end of its first (most aggressive) bracket.
    first_bracket = bracket_trials(full, factor)[0]
    hyperband_points = results["hyperband"]["points"]
    results["hyperband"]["first_bracket_tokens"] = hyperband_points[first_bracket - 1][0]
    return {"seed": seed, "best_either": best, "target": target, **results}


def compare_samplers(settings: dict, table: list[dict], trials: list[int], seeds: int) -> str:
    """Random search's best loss after each of `trials` full trials, with independent
    draws and with the quasi-random sequence (`tuning.sampler`), over the same seeds; each
    trial takes the row nearest to its values."""
    full = settings["max_units"]
    best = min(r["loss"][full] for r in table if r["loss"][full] != FAILED)
    lines = [f"random search on {len(table)} rows (best {best:.4f}), {seeds} seeds: the best "
             "loss after n full trials, median (quartiles), mean; seeds within 2% / 5% of the "
             "table's best"]
    with tempfile.TemporaryDirectory(prefix="tunereplay-") as directory:
        for sampler in ("random", "quasi_random"):
            runs = [run_oracle(make_oracle(settings, "random", 1 + 1000 * n, max(trials),
                                           sampler=sampler),
                               table, full, os.path.join(directory, f"{sampler}-{n}"))
                    for n in range(seeds)]
            for count in trials:
                bests = sorted(min((r["eval_loss"] for r in run[:count]
                                    if r["status"] == "completed"), default=math.inf)
                               for run in runs)
                near = [sum(b <= best * (1 + margin) for b in bests) / len(bests)
                        for margin in (tuning_budget.WITHIN, 0.05)]
                lines.append(f"{sampler:>12}, {count:>2} trials: {_median(bests):.4f} "
                             f"({bests[len(bests) // 4]:.4f}-{bests[3 * len(bests) // 4]:.4f}), "
                             f"mean {_mean(bests):.4f}; {near[0]:.0%} / {near[1]:.0%}")
    return "\n".join(lines)


def summary(settings: dict, table: list[dict], seeds: list[dict]) -> str:
    """The table's spread and rank agreement, then the replay's ratios and best losses."""
    full = settings["max_units"]
    finals = sorted(r["loss"][full] for r in table if r["loss"][full] != FAILED)
    within = sum(loss <= finals[0] * (1 + tuning_budget.WITHIN) for loss in finals)
    never = {name: sum(tuning_budget.reach(r[name])[1] for r in seeds)
             for name in ("hyperband", "random")}
    lower = {name: sum(r[name]["best"] < r[other]["best"] for r in seeds)
             for name, other in (("hyperband", "random"), ("random", "hyperband"))}
    return "\n".join([
        f"table: {len(table)} configurations, {len(table) - len(finals)} failed; best "
        f"{finals[0]:.4f}, median {_median(finals):.4f}; {within} within 2% of the best "
        f"({within / len(table):.0%})",
        "rank agreement of the rungs with the full budget (Spearman): " + ", ".join(
            f"{unit} unit(s) {spearman(table, unit, full):.2f}"
            for unit in rung_units(full, settings["factor"])[:-1]),
        f"replay: {len(seeds)} seeds; per seed Hyperband "
        f"{_mean(r['hyperband']['trials'] for r in seeds):.1f} trials and "
        f"{_mean(r['hyperband']['tokens'] for r in seeds):,.0f} tokens on average, random "
        f"search {_mean(r['random']['trials'] for r in seeds):.1f} full trials",
        f"hyperband / random tokens to within 2%, summed over seeds: "
        f"{tuning_budget.summed_ratio(seeds)}",
        f"per seed: {_spread(_ratio(r) for r in seeds)}",
        f"random search never came within 2% in {never['random']} seeds, hyperband in "
        f"{never['hyperband']} (counted with their whole budget)",
        f"both going on past the budget until they get there (random search over the "
        f"table, hyperband one more iteration, still short in "
        f"{sum(r['hyperband']['tokens_to_target_uncapped'] is None for r in seeds)} seeds): "
        f"summed "
        f"{_uncapped_ratio(seeds)}; per seed: "
        f"{_spread(_ratio(r, uncapped=True) for r in seeds)}",
        _arrivals(settings, seeds),
        f"best loss: hyperband lower in {lower['hyperband']} seeds, random lower in "
        f"{lower['random']}"])


def _arrivals(settings: dict, seeds: list[dict]) -> str:
    """Why the ratio is what it is: how many full trials random search needs to get there,
    and how often Hyperband gets there at its earliest."""
    needs = [r["random"]["tokens_to_target_uncapped"] / settings["tokens_per_trial"]
             for r in seeds if r["random"]["tokens_to_target_uncapped"] is not None]
    first = [r["hyperband"] for r in seeds]
    early = sum(h["tokens_to_target"] is not None
                and h["tokens_to_target"] <= h["first_bracket_tokens"] for h in first)
    return (f"random search, going on, needs {_median(needs):.1f} full trials to get there "
            f"at the median ({_mean(needs):.1f} on average); hyperband got there by the end "
            f"of its first bracket ({_mean(h['first_bracket_tokens'] for h in first):,.0f} "
            f"tokens on average) in {early / len(seeds):.0%} of seeds")


def spearman(table: list[dict], unit: int, full: int) -> float:
    """Rank correlation of the eval losses at `unit` and at `full` units (rows that
    completed both): how well a rung predicts the final order, which is what Hyperband's
    promotions bet on."""
    pairs = [(r["loss"][unit], r["loss"][full]) for r in table if r["loss"][full] != FAILED]
    low, high = (_ranks([p[i] for p in pairs]) for i in (0, 1))
    n = len(pairs)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(low, high)) / (n * (n * n - 1))


def _ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0] * len(values)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _ratio(result: dict, uncapped: bool = False) -> float:
    reach = _reach_uncapped if uncapped else tuning_budget.reach
    return reach(result["hyperband"])[0] / reach(result["random"])[0]


def _reach_uncapped(sweep: dict) -> tuple[int, bool]:
    """As `tuning_budget.reach`, for the sweep going on past the common budget."""
    if sweep["tokens_to_target_uncapped"] is None:
        return sweep["tokens_going_on"], True
    return sweep["tokens_to_target_uncapped"], False


def _spread(ratios) -> str:
    """Median, quartiles and shares of per-seed ratios."""
    ratios = sorted(ratios)
    third = sum(r <= 1 / 3 for r in ratios) / len(ratios)
    first = sum(r < 1 for r in ratios) / len(ratios)
    return (f"median {_median(ratios):.2f}, quartiles {ratios[len(ratios) // 4]:.2f}-"
            f"{ratios[3 * len(ratios) // 4]:.2f}; ratio <= 1/3 in {third:.0%} of seeds, "
            f"hyperband first in {first:.0%}")


def _uncapped_ratio(seeds: list[dict]) -> str:
    hyperband, random_search = ([_reach_uncapped(r[name]) for r in seeds]
                                for name in ("hyperband", "random"))
    return tuning_budget.show_ratio(
        sum(t for t, _ in hyperband), any(c for _, c in hyperband),
        sum(t for t, _ in random_search), any(c for _, c in random_search))


def _median(values) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "table":
        part = build_table(args)
        print(f"{len(part['table'])} rows -> {args.output}")
        return 0
    settings, table = load_tables(args.tables)
    if args.command == "samplers":
        print(compare_samplers(settings, table, args.trials, args.seeds))
        return 0
    if args.max_units is not None or args.factor is not None:
        settings, table = coarsen(settings, table, args.max_units or settings["max_units"],
                                  args.factor)
    seeds = [replay_seed(settings, table, 1 + 1000 * n, args.iterations, args.sampler)
             for n in range(args.seeds)]
    print(summary(settings, table, seeds))
    return 0


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    quiet_script()
    sys.exit(main())
