"""The tuning replay's bookkeeping on a made-up table (no training): the tokens our
Hyperband oracle spends over its brackets, continuations paying only their extra steps,
failed configurations paying what they trained, and the report's ratio."""

from __future__ import annotations

import pytest

from bench import tuning_replay
from tuning.budget import TokenBudget

TOKENS, UNITS, PER_STEP = 200_000, 9, 16 * 128


def _table(rows: int, failing: dict[int, int]) -> tuple[dict, list[dict]]:
    """Row r scores 6 + r/100 at full budget (2 more at one unit, 1 more at three), so every
    rung ranks the rows alike; `failing` maps a row to the unit it diverges at."""
    budget = TokenBudget(TOKENS, UNITS)
    steps = {u: budget.steps(u, PER_STEP) for u in (1, 3, 9)}
    table = []
    for r in range(rows):
        loss = {1: 8 + r / 100, 3: 7 + r / 100, 9: 6 + r / 100}
        row = {"values": {"row": r}, "tokens_per_step": PER_STEP, "steps": steps,
               "loss": loss, "failed_tokens": None}
        if r in failing:
            at = failing[r]
            row["loss"] = {u: (tuning_replay.FAILED if u >= at else v) for u, v in loss.items()}
            row["failed_tokens"] = (steps[at] - 1) * PER_STEP  # diverged at its rung's last step
        table.append(row)
    settings = {"rows": rows, "tokens_per_trial": TOKENS, "max_units": UNITS, "factor": 3}
    return settings, table


def test_hyperband_spends_its_brackets_tokens_and_random_search_as_many_full_trials():
    settings, table = _table(40, {})
    result = tuning_replay.replay_seed(settings, table, seed=1)
    # Steps to 1, 3 and 9 units at 2,048 tokens a step: 11, 33, 98. KerasTuner's brackets:
    # 9 at 1 unit, 3 continued to 3, 1 to 9; 5 at 3, 2 continued to 9; 3 at 9.
    steps = 9 * 11 + 3 * (33 - 11) + (98 - 33) + 5 * 33 + 2 * (98 - 33) + 3 * 98
    assert result["hyperband"]["trials"] == 23
    assert result["hyperband"]["tokens"] == steps * PER_STEP == 1_677_312
    assert result["random"]["trials"] == 8  # 1,677,312 tokens / 200,000 per full trial
    assert result["random"]["tokens"] == 8 * 98 * PER_STEP
    # Rank-preserving rungs: the first bracket's full-budget trial is the best of the nine it
    # screened, which here is within 2% of the best anyone found, at the bracket's end.
    first_bracket = (9 * 11 + 3 * 22 + 65) * PER_STEP
    assert result["hyperband"]["tokens_to_target"] == first_bracket
    assert result["hyperband"]["first_bracket_tokens"] == first_bracket


def test_hyperband_going_on_repeats_the_sweep_then_runs_its_brackets_again(tmp_path):
    # The replay's Hyperband past the common budget is a two-iteration sweep; its first
    # iteration must be the one-iteration sweep, trial for trial, for the counts to agree.
    settings, table = _table(60, {})
    once, twice = (tuning_replay.run_oracle(
        tuning_replay.make_oracle(settings, "hyperband", 7, 10**6, iterations=n), table, UNITS,
        str(tmp_path / str(n))) for n in (1, 2))
    assert len(once) == 23 and len(twice) == 46 and twice[:23] == once


def _spaced_table() -> tuple[dict, list[dict]]:
    """`_table(30, {})` with real values: learning rates spread evenly over 1e-4..1e-1 on a
    log scale (lower scores better), batch sizes 8 and 16 in turn."""
    import json

    settings, table = _table(30, {})
    for r, row in enumerate(table):
        row["values"] = {"train.learning_rate": 10 ** (-4 + 3 * r / 29),
                         "train.batch_size": (8, 16)[r % 2]}
    settings["space"] = json.dumps({"learning_rate": {"min": 1e-4, "max": 1e-1},
                                    "batch_size": [8, 16]})
    return settings, table


def test_a_sampled_replay_gives_each_trial_the_row_nearest_its_values(tmp_path):
    # `--sampler`: the oracles sample the table's space itself, and a trial scores as the
    # row nearest to its values, each range scaled as KerasTuner samples it (log here).
    settings, table = _spaced_table()
    oracle = tuning_replay.make_oracle(settings, "random", 1, 12, sampler="quasi_random")
    lookup = tuning_replay.nearest_row(table, oracle.hyperparameters)
    assert lookup({"train.learning_rate": 1.1e-4, "train.batch_size": 8}) == 0
    assert lookup({"train.learning_rate": 1.1e-4, "train.batch_size": 16}) == 1
    assert lookup({"train.learning_rate": 0.09, "train.batch_size": 16}) == 29
    assert lookup({"train.learning_rate": 0.09, "train.batch_size": 8}) == 28
    trials = tuning_replay.run_oracle(oracle, table, UNITS, str(tmp_path))
    losses = [t["eval_loss"] for t in trials]
    assert len(trials) == 12 and set(losses) <= {row["loss"][UNITS] for row in table}
    assert len(set(losses)) == 12  # quasi-random values spread over twelve different rows


def test_the_sampler_comparison_reports_both_samplers_at_every_budget():
    settings, table = _spaced_table()
    report = tuning_replay.compare_samplers(settings, table, [2, 6], seeds=3).splitlines()
    assert report[0].startswith("random search on 30 rows (best 6.0000), 3 seeds")
    medians = {}
    for line in report[1:]:
        sampler, rest = line.split(",", 1)
        count = int(rest.split()[0])
        medians[sampler.strip(), count] = float(rest.split(":")[1].split()[0])
    assert set(medians) == {(s, n) for s in ("random", "quasi_random") for n in (2, 6)}
    # Every score is a row's (6 + r/100) and more trials never end worse.
    assert all(6 <= m <= 6.29 and abs(m * 100 - round(m * 100)) < 1e-6
               for m in medians.values())
    assert all(medians[s, 6] <= medians[s, 2] for s in ("random", "quasi_random"))


def test_a_27_unit_table_coarsened_to_9_units_is_the_9_unit_table():
    # Rungs 3, 9 and 27 of 27 units are rungs 1, 3 and 9 of 9, to the step, so a smaller
    # Hyperband replays on a larger one's table exactly as on a table of its own.
    settings, table = _table(40, {5: 3})
    fine = TokenBudget(TOKENS, 27)
    wide = {**settings, "max_units": 27}
    rows = [{**row, "steps": {u: fine.steps(u, PER_STEP) for u in (1, 3, 9, 27)},
             "loss": {1: 9.0, **{3 * u: loss for u, loss in row["loss"].items()}}}
            for row in table]
    assert tuning_replay.coarsen(wide, rows, 9) == (settings, table)
    assert tuning_replay.replay_seed(*tuning_replay.coarsen(wide, rows, 9), seed=1) == \
        tuning_replay.replay_seed(settings, table, seed=1)


def test_a_larger_factor_replays_on_the_rungs_it_shares_with_the_table():
    # Factor 9 with 9 units is one bracket of 9 configurations at one unit, the best
    # continued to 9, then 2 at 9 units: rows 0..10 ranked alike at every rung, so the
    # first bracket keeps row 0 and pays 9 x 11 + (98 - 11) steps.
    settings, table = _table(40, {})
    wide, rows = tuning_replay.coarsen(settings, table, 9, factor=9)
    assert wide == {**settings, "factor": 9}
    assert rows == [{**row, "steps": {u: row["steps"][u] for u in (1, 9)},
                     "loss": {u: row["loss"][u] for u in (1, 9)}} for row in table]
    result = tuning_replay.replay_seed(wide, rows, seed=1)
    assert result["hyperband"]["trials"] == 9 + 1 + 2
    assert result["hyperband"]["first_bracket_tokens"] == (9 * 11 + 98 - 11) * PER_STEP
    assert result["hyperband"]["tokens"] == (9 * 11 + 98 - 11 + 2 * 98) * PER_STEP


@pytest.mark.parametrize("max_units", [2, 4])
def test_a_hyperband_whose_rungs_the_table_lacks_is_refused(max_units, capsys):
    settings, table = _table(4, {})
    with pytest.raises(SystemExit) as stop:
        tuning_replay.coarsen(settings, table, max_units)
    assert stop.value.code == 2
    assert f"--max-units {max_units} --factor 3: the table's rungs [1, 3, 9] of 9 units do not hold" in \
        capsys.readouterr().err


def test_more_iterations_give_random_search_as_many_more_full_trials():
    settings, table = _table(80, {})
    once, twice = (tuning_replay.replay_seed(settings, table, seed=1, iterations=n)
                   for n in (1, 2))
    assert (once["hyperband"]["trials"], twice["hyperband"]["trials"]) == (23, 46)
    assert twice["hyperband"]["tokens"] == 2 * once["hyperband"]["tokens"]
    # 1,677,312 and 3,354,624 tokens: 8.4 and 16.8 full trials of 200,000, rounded.
    assert (once["random"]["trials"], twice["random"]["trials"]) == (8, 17)


def test_failed_configurations_pay_what_they_trained_and_their_continuations_nothing(tmp_path):
    failing = {r: 1 for r in range(40) if r % 10}  # nine in ten diverge in their first unit
    settings, table = _table(40, failing)
    hyperband = tuning_replay.run_oracle(tuning_replay.make_oracle(settings, "hyperband", 1, 10**6),
                                         table, UNITS, str(tmp_path))
    failed = [r for r in hyperband if r["status"] == "failed"]
    # A fresh run of a failing row pays the 10 steps before it diverged, at any rung.
    assert failed and {r["tokens"] for r in failed} == {0, 10 * PER_STEP}
    assert any(r["tokens"] == 0 for r in failed)  # a failed trial promoted: nothing trained
    assert any(r["status"] == "completed" and r["eval_loss"] < 7 for r in hyperband)


@pytest.mark.parametrize("hyperband, random_search, shown", [
    ((100, False), (300, False), "0.33"),
    ((100, False), (300, True), "<= 0.33"),
    ((300, True), (100, False), ">= 3.00")])
def test_a_sweep_that_never_got_there_makes_the_ratio_a_bound(hyperband, random_search, shown):
    from bench.tuning_budget import show_ratio

    assert show_ratio(*hyperband, *random_search) == shown


@pytest.mark.parametrize("table, rows, trials, hyperband, random_search", [
    # tokens spent, to within 2% (None: never, within the common budget), to within 2%
    # going on past the budget, best loss
    ("lr_batch-200k-*", 48, (23, 8), (1_687_552, 954_368, 954_368, 6.144663653071176),
     (1_605_632, None, 2_609_152, 6.400868771161489)),
    ("full-500k-*", 48, (23, 8), (4_194_304, 2_352_128, 2_352_128, 5.56188048971981),
     (4_016_128, None, 6_026_240, 5.961054904098582)),
    ("lr_batch-600k-27u-[12]", 96, (70, 14), (8_386_560, 1_830_912, 1_830_912, 5.506446012132588),
     (8_415_232, 5_410_816, 5_410_816, 5.506446012132588)),
    # The same table grown to 192 rows (parts 3 and 4: `table --first-row 96`).
    ("lr_batch-600k-27u-*", 192, (70, 14), (8_378_368, 5_578_752, 5_578_752, 5.334272709882109),
     (8_407_040, None, 25_829_376, 5.661046939787894)),
])
def test_the_measured_tables_replay_as_documented(table, rows, trials, hyperband, random_search):
    # Seed 1 of the replays docs/tuning.md reports: the committed measurements, read by the
    # code as it is now, still give the same sweeps.
    from pathlib import Path

    parts = sorted(Path(__file__).parents[2].glob(f"bench/measurements/tuning/table-{table}.json"))
    settings, table_rows = tuning_replay.load_tables([str(p) for p in parts])
    assert len(table_rows) == settings["rows"] == rows
    result = tuning_replay.replay_seed(settings, table_rows, seed=1)
    for name, expected, count in (("hyperband", hyperband, trials[0]),
                                  ("random", random_search, trials[1])):
        got = result[name]
        assert got["trials"] == count
        assert (got["tokens"], got["tokens_to_target"], got["tokens_to_target_uncapped"]) == \
            expected[:3]
        assert got["best"] == pytest.approx(expected[3], rel=1e-12)


def test_a_table_extended_with_more_rows_of_its_seed_replays_as_one(tmp_path, capsys):
    # `--first-row` trains only the new rows: a larger table's first configurations are
    # the smaller one's, and parts of both load as one table.
    import json

    from pipeline.core.config import SearchSpaceConfig
    from pipeline.core.configio import build

    space = build(SearchSpaceConfig, {"learning_rate": {"min": 1e-4, "max": 3e-1},
                                      "batch_size": [8, 16, 32]})
    assert tuning_replay.draw_configurations(space, 7, seed=1)[:4] == \
        tuning_replay.draw_configurations(space, 4, seed=1)
    settings, table = _table(7, {})
    common = {"space": "s", "table_seed": 1, "tokens_per_trial": TOKENS, "max_units": UNITS,
              "factor": 3}
    for name, rows, numbers in (("first", 4, range(4)), ("more", 7, range(4, 7))):
        part = {**common, "rows": rows,
                "table": {str(n): {**table[n], "loss": {str(u): v for u, v in table[n]["loss"].items()},
                                   "steps": {str(u): v for u, v in table[n]["steps"].items()}}
                          for n in numbers}}
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    parts = [str(tmp_path / "first.json"), str(tmp_path / "more.json")]
    assert tuning_replay.load_tables(parts) == ({**common, "rows": 7}, table)
    # The extension alone lacks the first rows.
    with pytest.raises(SystemExit):
        tuning_replay.load_tables(parts[1:])
    assert "the parts hold rows [4, 5, 6], expected 0..6" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["replay", "/no/such.json"], "/no/such.json: cannot read it (No such file or directory)"),
    (["replay", "{readme}"], "README.md: cannot read it"),
    (["table", "--config", "x", "--output", "y", "--part", "3/2"],
     "argument --part: expected i/k with 1 <= i <= k, got '3/2'"),
    (["table", "--config", "x", "--output", "y", "--rows", "96", "--first-row", "96"],
     "argument --first-row: expected 0..95 (--rows 96), got 96"),
    (["table", "--config", "x", "--output", "y", "--first-row", "-1"],
     "argument --first-row: expected 0..47 (--rows 48), got -1"),
    (["replay", "x.json", "--iterations", "0"],
     "argument --iterations: expected a whole number >= 1, got '0'"),
    (["replay", "x.json", "--seeds", "0"], "argument --seeds: expected a whole number >= 1, got '0'"),
    (["samplers", "x.json", "--seeds", "-1"],
     "argument --seeds: expected a whole number >= 1, got '-1'"),
    (["samplers", "x.json", "--trials", "0"],
     "argument --trials: expected a whole number >= 1, got '0'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    from pathlib import Path

    readme = str(Path(__file__).parents[2] / "README.md")
    with pytest.raises(SystemExit) as stop:
        tuning_replay.main([a.format(readme=readme) for a in args])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.slow
def test_a_table_trains_each_row_along_the_rungs_and_keeps_finished_rows(
        tiny_config_file, tmp_path, monkeypatch, capsys):
    """`table` in two parts on the tiny inputs: every row trained to each rung with the
    steps its batch size needs for the rung's tokens, the parts replay together, and a build
    that stops keeps the rows it finished."""
    import json
    import math
    from pathlib import Path

    from tests.tuning import helpers

    examples, tokenizer = helpers.write_inputs(tmp_path / "inputs")
    table = ["table", "--config", str(tiny_config_file), "--examples", str(examples),
             "--tokenizer", str(tokenizer), "--space", "lr_batch", "--rows", "6",
             "--tokens-per-trial", "6000", "--max-units", "3"]
    parts = [str(tmp_path / f"part{i}.json") for i in (1, 2)]
    for i, part in enumerate(parts, 1):
        assert tuning_replay.main([*table, "--part", f"{i}/2", "--output", part]) == 0
    settings, rows = tuning_replay.load_tables(parts)
    assert json.loads(Path(parts[1]).read_text())["table"].keys() == {"1", "3", "5"}
    for row in rows:
        per_step = row["values"]["train.batch_size"] * helpers.SEQUENCE_LENGTH
        assert row["tokens_per_step"] == per_step
        assert row["steps"] == {1: math.ceil(2000 / per_step), 3: math.ceil(6000 / per_step)}
        assert row["failed_tokens"] is None and set(row["loss"]) == {1, 3}
        assert all(math.isfinite(loss) and loss > 0 for loss in row["loss"].values())
        assert row["loss"][3] != row["loss"][1]  # the second rung trained on
    # Brackets of max_units 3: three configurations at 1 unit, one continued to 3, two at 3.
    assert tuning_replay.replay_seed(settings, rows, seed=1)["hyperband"]["trials"] == 6

    # A build stopped at its second row keeps the first, and its part does not pass for a
    # whole table.
    train_chain = tuning_replay.train_chain
    trained = []

    def stop_at_the_second_row(*args):
        if trained:
            raise KeyboardInterrupt
        trained.append(train_chain(*args))
        return trained[-1]

    monkeypatch.setattr(tuning_replay, "train_chain", stop_at_the_second_row)
    stopped = tmp_path / "stopped.json"
    with pytest.raises(KeyboardInterrupt):
        tuning_replay.main([*table, "--output", str(stopped)])
    assert list(json.loads(stopped.read_text())["table"]) == ["0"]
    assert [p.name for p in tmp_path.glob("stopped*")] == ["stopped.json"]
    with pytest.raises(SystemExit) as refused:
        tuning_replay.load_tables([str(stopped)])
    assert refused.value.code == 2
    assert "the parts hold rows [0], expected 0..5" in capsys.readouterr().err


def test_the_documented_sampler_table_is_the_recorded_output():
    # docs/tuning.md's quasi-random table copies bench/measurements/tuning/samplers-27u.txt.
    import re
    from pathlib import Path

    top = Path(__file__).parents[2]
    recorded = (top / "bench/measurements/tuning/samplers-27u.txt").read_text()
    docs = (top / "docs/tuning.md").read_text()
    rows = re.findall(r"^\s*(\w+), +(\d+) trials: (\S+ \(\S+\)), mean \S+; \d+% / (\d+%)$",
                      recorded, re.M)
    assert len(rows) == 6
    got = {(sampler, trials): (loss, near) for sampler, trials, loss, near in rows}
    for trials in ("4", "8", "14"):
        (iid, iid_near), (quasi, quasi_near) = got["random", trials], got["quasi_random", trials]
        assert re.search(rf"^\| {trials} \| {re.escape(iid)} \| {re.escape(quasi)} \| "
                         rf"{iid_near}( of seeds)? \| {quasi_near} \|$", docs, re.M), trials
