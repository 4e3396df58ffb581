"""evaluate: TFMA's numbers against NumPy on a hand-built bigram model, slicing, the gate,
samples and the report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from components import evaluate
from components.evaluate import report, samples as samples_lib, slicing
from pipeline.core.contracts import serving_dir
from pipeline.core.errors import UsageError
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm
from tests.conftest import build_config, tiny_raw_config
from tests.report_reader import lookup, read_report

SEQUENCE_LENGTH = 16
REL = 1e-4
BUCKETS = (6, 12)
PROMPT = "one two three four five six seven eight"
OTHER_PROMPT = "uno two three four five six seven eight"
SAMPLE_TOKENS = 6
DOMAINS = ("math", "os", "json")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eval examples (gzip shards), eval documents, and two models: `sharp` (worse here) and
    `flat` (better)."""
    root = tmp_path_factory.mktemp("evaluate")
    records = lm.make_records(90, SEQUENCE_LENGTH, seed=7, domains=DOMAINS)
    lm.write_examples(root / "examples", records, SEQUENCE_LENGTH, gzip=True, shards=3)
    # The same windows as the transform writes them now: with their documents' length bucket.
    with_buckets = [{**r, "length_bucket": ("0-127", "128-511")[i % 2]} for i, r in enumerate(records)]
    lm.write_examples(root / "examples_v2", with_buckets, SEQUENCE_LENGTH)
    tables = {
        "sharp": lm.write_bigram_model(root / "sharp", seed=1, sequence_length=SEQUENCE_LENGTH),
        "flat": lm.write_bigram_model(root / "flat", seed=2, sequence_length=SEQUENCE_LENGTH,
                                      sharpness=0.5),
    }
    greedy = lm.greedy_completion(tables["sharp"], PROMPT, SAMPLE_TOKENS)
    lm.write_documents(root / "documents", [
        {"text": f"{PROMPT} {greedy} and then more", "domain": "math"},
        {"text": "too short", "domain": "json"},
        {"text": f"{OTHER_PROMPT} zzzz qqqq", "domain": "os"},
        {"text": "a second math document long enough to give a prompt", "domain": "math"},
        {"text": f"{PROMPT} and a different ending", "domain": "os"},
    ])
    return {"root": root, "records": records, "tables": tables, "with_buckets": with_buckets}


def _evaluate(world, tmp_path, model: str, baseline: str | None = None,
              examples: str = "examples", beam_args: tuple[str, ...] | None = None,
              **evaluation):
    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["evaluation"] = {"num_samples": 0, **evaluation}
    config = build_config(raw)
    root = world["root"]
    inputs = {"model": lm.artifact("Model", root / model, f"fp-{model}"),
              "examples": lm.artifact("Examples", root / examples, "fp-examples"),
              "documents": lm.artifact("Documents", root / "documents", "fp-documents"),
              "tokenizer": None,
              "baseline": (lm.artifact("Model", root / baseline / "saved_model", f"fp-{baseline}")
                           if baseline else None)}
    outputs = {name: tmp_path / name for name in evaluate.SPEC.outputs}
    for path in outputs.values():
        path.mkdir()
    runtime = Runtime(run_id="test-run", root=str(tmp_path),
                      beam_args=config.pipeline.beam_args if beam_args is None else beam_args)
    evaluate.run(inputs, {k: str(v) for k, v in outputs.items()}, runtime,
                 evaluation=config.evaluation, task=config.task, push=config.push)
    docs = {name: json.loads((outputs[out] / name).read_text()) for out, name in (
        ("evaluation", "metrics.json"), ("blessing", "blessing.json"),
        ("evaluation", "samples.json"))}
    return docs["metrics.json"], docs["blessing.json"], docs["samples.json"], outputs


def _assert_metrics_equal(actual: dict, expected: dict) -> None:
    assert actual["example_count"] == expected["example_count"]
    assert actual["token_count"] == expected["token_count"]
    for name in ("mean_nll", "perplexity", "bits_per_byte", "token_accuracy",
                 "unigram_perplexity"):
        assert actual[name] == pytest.approx(expected[name], rel=REL), name


def _bucket(record) -> str:
    span = lm.longest_span(record["segment_ids"])
    return "0-5" if span < 6 else "6-11" if span < 12 else "12+"


def assert_report_matches(outputs: dict, metrics: dict, verdict: dict, samples: dict) -> str:
    """Every number in report.html is the one in the JSON it names, shown as `report.fmt`."""
    page = outputs["evaluation"] / "report.html"
    cells, text = read_report(page)
    documents = {"metrics": metrics, "blessing": verdict, "samples": samples}
    for cell in cells:
        value = lookup(documents[cell["data-doc"]], cell["path"])
        if value is None:
            assert "data-value" not in cell and cell["shown"] == "n/a", cell
        else:
            assert float(cell["data-value"]) == value, cell
            assert cell["shown"] == report.shown(value, cell["path"]), cell
    shown = {tuple(cell["path"]) for cell in cells if cell["data-doc"] == "metrics"}
    for name in report.TABLE_METRICS:
        assert ("overall", name) in shown
        assert all(("slices", s, name) in shown for s in metrics["slices"])
    for kind in ("failures", "ignored_failures"):
        for i, _ in enumerate(verdict[kind]):
            assert any(c["data-doc"] == "blessing" and c["path"][:2] == [kind, i] for c in cells)
    by_path = {tuple(c["path"]): c["shown"] for c in cells if c["data-doc"] == "metrics"}
    assert by_path[("overall", "perplexity")] == f"{metrics['overall']['perplexity']:.6g}"
    assert by_path[("overall", "example_count")] == str(int(metrics["overall"]["example_count"]))
    if metrics["comparison"]:
        relative = metrics["comparison"]["bits_per_byte"]["relative_change"]
        assert by_path[("comparison", "bits_per_byte", "relative_change")] == f"{relative:+.3%}"
    return text


def test_metrics_slices_samples_and_report_without_a_baseline(world, tmp_path):
    metrics, verdict, samples, outputs = _evaluate(
        world, tmp_path, "sharp", max_perplexity=None, length_buckets=list(BUCKETS),
        min_slice_size=9, num_samples=2, sample_prompt_words=8, sample_max_tokens=SAMPLE_TOKENS)
    table, records = world["tables"]["sharp"], world["records"]
    _assert_metrics_equal(metrics["overall"], lm.reference_metrics(table, records))
    counts = {b: sum(_bucket(r) == b for r in records) for b in ("0-5", "6-11", "12+")}
    assert counts["12+"] < 9 <= min(counts["0-5"], counts["6-11"])
    # The 12+ bucket is below min_slice_size: TFMA computes nothing for it.
    assert set(metrics["slices"]) == {"domain=math", "domain=os", "domain=json",
                                      "length_bucket=0-5", "length_bucket=6-11"}
    assert metrics["derived_slice_features"] == ["length_bucket"]
    for name, values in metrics["slices"].items():
        feature, value = name.split("=", 1)
        subset = [r for r in records if (r["domain"] if feature == "domain" else _bucket(r)) == value]
        _assert_metrics_equal(values, lm.reference_metrics(table, subset))
    assert metrics["overall"]["perplexity"] == pytest.approx(
        math.exp(metrics["overall"]["mean_nll"]), rel=1e-12)
    assert metrics["baseline"] is None and metrics["comparison"] is None
    assert verdict["blessed"] is True and verdict["failures"] == [] and verdict["baseline"] is None
    assert verdict["metrics"] == metrics["overall"] and verdict["slices"] == metrics["slices"]
    assert verdict["candidate"]["saved_model_sha256"] == serving_dir.saved_model_digest(
        str(world["root"] / "sharp" / "saved_model"))
    assert verdict["lineage"]["examples"]["fingerprint"] == "fp-examples"
    assert verdict["lineage"]["documents"]["fingerprint"] == "fp-documents"
    assert verdict["run_id"] == "test-run" and verdict["evaluation"]["min_slice_size"] == 9
    summary = evaluate.summary({name: lm.artifact("x", path, "fp") for name, path in outputs.items()})
    assert summary == {"eval_perplexity": metrics["overall"]["perplexity"],
                       "eval_bits_per_byte": metrics["overall"]["bits_per_byte"],
                       "eval_token_accuracy": metrics["overall"]["token_accuracy"],
                       "eval_unigram_perplexity": metrics["overall"]["unigram_perplexity"],
                       "golden_perplexity": None, "golden_bits_per_byte": None,  # no golden set
                       "blessed": True}

    # Samples: one prompt per domain first (math, then os); json's document is too short.
    first, second = samples["samples"]
    assert (first["domain"], first["prompt"]) == ("math", PROMPT)
    assert (second["domain"], second["prompt"]) == ("os", OTHER_PROMPT)
    assert first["greedy"] == lm.greedy_completion(table, PROMPT, SAMPLE_TOKENS)
    assert second["greedy"] == lm.greedy_completion(table, OTHER_PROMPT, SAMPLE_TOKENS)
    # The first document goes on with exactly the greedy continuation; the second does not.
    assert first["greedy_reference"] == first["greedy"]
    assert (first["greedy_rouge_l"], first["greedy_bleu"]) == (1.0, pytest.approx(100.0))
    assert (second["greedy_reference"], second["greedy_rouge_l"], second["greedy_bleu"]) == (
        "zzzz", 0.0, 0.0)
    assert samples["summary"]["greedy"] == {"rouge_l": 0.5, "bleu": pytest.approx(50.0)}
    for sample in (first, second):
        assert len(sample["sampled"]) == SAMPLE_TOKENS and set(sample["sampled"]) <= set("hijklmno")
        assert sample["sampled_rouge_l"] == float(sample["sampled"] == sample["sampled_reference"])
    assert samples["settings"]["temperature"] == 0.8 and samples["settings"]["seed"] == 0

    text = assert_report_matches(outputs, metrics, verdict, samples)
    assert "BLESSED" in text and "NOT BLESSED" not in text
    assert first["greedy"] in text and "zzzz" in text
    for metric in report.CHART_METRICS:
        png = outputs["evaluation"] / f"slices_{metric}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="slices_{metric}.png"' in (outputs["evaluation"] / "report.html").read_text()


def _relative_worsening(world) -> float:
    sharp = lm.reference_metrics(world["tables"]["sharp"], world["records"])["bits_per_byte"]
    flat = lm.reference_metrics(world["tables"]["flat"], world["records"])["bits_per_byte"]
    assert sharp > flat
    return (sharp - flat) / flat


@pytest.mark.parametrize("factor, blessed", [(0.99, False), (1.01, True)])
def test_value_and_change_thresholds_in_both_directions(world, tmp_path, factor, blessed):
    sharp = lm.reference_metrics(world["tables"]["sharp"], world["records"])
    flat = lm.reference_metrics(world["tables"]["flat"], world["records"])
    bound, limit = sharp["perplexity"] * factor, _relative_worsening(world) * factor
    metrics, verdict, samples, outputs = _evaluate(
        world, tmp_path, "sharp", baseline="flat", max_perplexity=bound,
        max_bits_per_byte_increase=limit,
        max_slice_bits_per_byte_increase=None if blessed else 0.0, slice_gate_min_examples=31)
    _assert_metrics_equal(metrics["baseline"]["overall"], flat)
    worse = sharp["bits_per_byte"] - flat["bits_per_byte"]
    assert metrics["diff"]["overall"]["bits_per_byte"] == pytest.approx(worse, rel=REL)
    assert metrics["comparison"]["bits_per_byte"]["relative_change"] == pytest.approx(
        worse / flat["bits_per_byte"], rel=REL)
    assert verdict["baseline"]["uri"].endswith("saved_model")
    assert verdict["blessed"] is blessed
    text = assert_report_matches(outputs, metrics, verdict, samples)
    if blessed:
        assert verdict["failures"] == [] and verdict["ignored_failures"] == []
        return
    assert "NOT BLESSED" in text
    by_place = {(f["metric"], f["slice"], f["kind"]): f for f in verdict["failures"]}
    # The one length bucket holds all 90 examples and counts; each domain (30) is too small.
    assert set(by_place) == {("perplexity", "overall", "value"),
                             ("bits_per_byte", "overall", "change"),
                             ("bits_per_byte", "length_bucket=0-31", "change")}
    value = by_place[("perplexity", "overall", "value")]
    assert value["threshold"]["valueThreshold"]["upperBound"] == pytest.approx(bound)
    assert value["value"] == value["candidate"] == pytest.approx(sharp["perplexity"], rel=REL)
    change = by_place[("bits_per_byte", "overall", "change")]
    assert change["threshold"]["changeThreshold"]["relative"] == pytest.approx(limit)
    assert change["value"] == pytest.approx(worse, rel=REL)
    assert change["candidate"] == pytest.approx(sharp["bits_per_byte"], rel=REL)
    assert change["baseline"] == pytest.approx(flat["bits_per_byte"], rel=REL)
    assert change["relative_change"] == pytest.approx(worse / flat["bits_per_byte"], rel=REL)
    assert sorted(f["slice"] for f in verdict["ignored_failures"]) == [
        "domain=json", "domain=math", "domain=os"]


def test_better_candidate_passes_every_change_threshold(world, tmp_path):
    # These examples carry their own length_bucket (as the transform writes it): TFMA
    # slices on it as it is, nothing is derived.
    metrics, verdict, _, _ = _evaluate(world, tmp_path, "flat", baseline="sharp",
                                       examples="examples_v2", max_bits_per_byte_increase=0.0,
                                       max_slice_bits_per_byte_increase=0.0,
                                       slice_gate_min_examples=1, length_buckets=list(BUCKETS))
    assert metrics["derived_slice_features"] == []
    assert set(metrics["slices"]) == {*(f"domain={d}" for d in DOMAINS),
                                      "length_bucket=0-127", "length_bucket=128-511"}
    table, records = world["tables"]["flat"], world["with_buckets"]
    for bucket in ("0-127", "128-511"):
        _assert_metrics_equal(metrics["slices"][f"length_bucket={bucket}"], lm.reference_metrics(
            table, [r for r in records if r["length_bucket"] == bucket]))
    assert metrics["diff"]["overall"]["bits_per_byte"] < 0
    assert set(metrics["diff"]["slices"]) == set(metrics["slices"])
    assert all(values["bits_per_byte"] < 0 for values in metrics["diff"]["slices"].values())
    assert verdict["blessed"] is True and verdict["failures"] == []


def test_length_buckets_are_the_longest_document_span():
    assert slicing.bucket_labels((6, 12)) == ["0-5", "6-11", "12+"]
    assert slicing.bucket_labels(()) == ["0+"]
    assert [slicing.bucket_start(b) for b in ("0-5", "128-511", "2048+", "")] == [0, 128, 2048, -1]
    windows = {(1, 1, 2, 2, 2, 0): 3, (1, 1, 1, 1, 1, 1): 6, (0, 0, 0): 0, (1, 2, 3, 3, 0, 0): 2}
    for segments, span in windows.items():
        assert slicing.longest_span(np.array(segments)) == span == lm.longest_span(segments)
    assert [slicing.length_bucket(np.array(s), (3, 6)) for s in windows] == [
        "3-5", "6+", "0-2", "0-2"]


def test_slice_features_must_be_one_value_features(world):
    examples = str(world["root"] / "examples")
    assert slicing.features_to_derive(("domain", "length_bucket"), examples) == ("length_bucket",)
    assert slicing.features_to_derive(("length_bucket", "domain"),
                                      str(world["root"] / "examples_v2")) == ()
    with pytest.raises(UsageError, match="'source' is not a one-value feature of the examples "
                                         r"\(usable: domain, length_bucket, num_bytes\)"):
        slicing.features_to_derive(("domain", "source"), examples)
    with pytest.raises(UsageError, match="'token_ids' is not a one-value feature"):
        slicing.features_to_derive(("token_ids",), examples)


def test_prompts_are_document_beginnings_round_robin_over_domains(world):
    prompts = samples_lib.pick_prompts(str(world["root"] / "documents"), 5, 8)
    # The last document begins like the first: its prompt is not shown twice.
    assert [(p["domain"], p["prompt"]) for p in prompts] == [
        ("math", PROMPT), ("os", OTHER_PROMPT), ("math", "a second math document long enough to give")]
    assert prompts[2]["rest"] == " a prompt"
    assert samples_lib.split_prompt("a  b\nc", 2) == ("a  b", "\nc")
    assert samples_lib.split_prompt("a b", 2) is None
    assert samples_lib.reference_for(" x y z", "two words") == "x y"
    assert samples_lib.reference_for(" x", "") == "x"


def _fake_version(directory: Path, number: int, digest: str) -> None:
    path = directory / str(number)
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    (path / serving_dir.MODEL_CARD).write_text(json.dumps(
        {"model": {"saved_model_sha256": digest}, "run_id": f"run-{number}"}))


def test_baseline_resolver_recognises_the_candidate_by_content(tmp_path, world):
    serving = tmp_path / "serving"
    config = build_config({**tiny_raw_config(tmp_path, Path("corpus")),
                           "push": {"serving_dir": str(serving)}})
    candidate = world["root"] / "sharp"
    digest = serving_dir.saved_model_digest(str(candidate / "saved_model"))
    inputs = {"model": lm.artifact("Model", candidate, "fp-from-a-dag-run")}
    assert evaluate.resolve_baseline(config, inputs) is None
    _fake_version(serving, 1, "an-older-model")
    _fake_version(serving, 2, digest)
    (serving / "3").mkdir()  # incomplete: no saved_model.pb
    baseline = evaluate.resolve_baseline(config, inputs)
    assert baseline.uri == str(serving / "1") and baseline.properties == {
        "version": 1, "model_sha256": "an-older-model", "run_id": "run-1"}
    # The same model as a single-component run sees it: another URI, another fingerprint.
    copy = tmp_path / "elsewhere"
    import shutil

    shutil.copytree(candidate, copy)
    again = evaluate.resolve_baseline(config, {"model": lm.artifact("Model", copy, "fp-uri-hash")})
    assert again == baseline
    other = evaluate.resolve_baseline(config, {"model": lm.artifact("Model", world["root"] / "flat",
                                                                    "fp-flat")})
    assert other.properties["version"] == 2 and other.fingerprint != baseline.fingerprint


def test_saved_model_digest_covers_every_file_but_the_card(tmp_path):
    model = tmp_path / "m"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "v.data").write_bytes(b"weights")
    before = serving_dir.saved_model_digest(str(model))
    (model / serving_dir.MODEL_CARD).write_text("{}")
    assert serving_dir.saved_model_digest(str(model)) == before
    (model / "variables" / "v.data").write_bytes(b"weightz")
    assert serving_dir.saved_model_digest(str(model)) != before


SAVE_MODULE = """
import sys
import tensorflow as tf
module = tf.Module()
module.weights = tf.Variable([1.0, float(sys.argv[2])])
module.scale = tf.function(lambda x: x * module.weights,
                           input_signature=[tf.TensorSpec([2], tf.float32)])
tf.saved_model.save(module, sys.argv[1])
"""


def test_the_same_model_saved_twice_has_one_digest(tmp_path):
    import subprocess
    import sys

    # Separate processes, as two trainings are: TensorFlow's fingerprint.pb still differs
    # (a random UUID per save), everything else is byte-identical.
    for name, weight in (("a", "2"), ("b", "2"), ("c", "3")):
        subprocess.run([sys.executable, "-c", SAVE_MODULE, str(tmp_path / name), weight],
                       check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                       capture_output=True)
    fingerprints = {(tmp_path / n / "fingerprint.pb").read_bytes() for n in "ab"}
    assert len(fingerprints) == 2
    a, b, c = (serving_dir.saved_model_digest(str(tmp_path / n)) for n in "abc")
    assert a == b and c != a


def test_model_without_saved_model_is_a_usage_error(tmp_path):
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(UsageError, match="no SavedModel"):
        evaluate._saved_model(lm.artifact("Model", tmp_path / "empty_model", "fp"))


def test_examples_artifact_problems_are_usage_errors(tmp_path):
    from components.evaluate.analysis import eval_files

    with pytest.raises(UsageError, match="missing feature spec"):
        eval_files(str(tmp_path))
    (tmp_path / "feature_spec.json").write_text(json.dumps({"sequence_length": 8,
                                                            "gzip": "zstd"}))
    with pytest.raises(UsageError, match="gzip must be true or false, got 'zstd'"):
        eval_files(str(tmp_path))
    (tmp_path / "feature_spec.json").write_text(json.dumps({"sequence_length": 8,
                                                            "gzip": False}))
    with pytest.raises(UsageError, match=r"no eval shards \(eval-\*\.tfrecord\)"):
        eval_files(str(tmp_path))
    (tmp_path / "eval-00000-of-00001.tfrecord").write_bytes(b"")
    assert eval_files(str(tmp_path)) == (str(tmp_path / "eval-*.tfrecord"), False)


def test_examples_of_another_task_type_are_a_usage_error(world, tmp_path):
    import re

    spec = json.loads((world["root"] / "examples" / "feature_spec.json").read_text())
    other = world["root"] / "examples_classification"
    other.mkdir(exist_ok=True)
    (other / "feature_spec.json").write_text(json.dumps(
        {**spec, "task": {"type": "classification", "labels": ["a", "b"]}}))
    with pytest.raises(UsageError, match=re.escape(
            f"task.type is 'lm' but {other} holds examples for 'classification'")):
        _evaluate(world, tmp_path, "sharp", examples="examples_classification")


def test_every_tfma_run_gets_an_explicit_running_mode(world, tmp_path, beam_flags):
    """Without one, Beam's DirectRunner first reaches for the Prism runner (a download):
    the evaluation's Beam pipeline gets `pipeline.core.beam`'s options, as every Beam step."""
    from tests.conftest import PipelineStarted

    with pytest.raises(PipelineStarted):
        _evaluate(world, tmp_path, "sharp", beam_args=())
    (tmp_path / "with_args").mkdir()
    with pytest.raises(PipelineStarted):
        _evaluate(world, tmp_path / "with_args", "sharp",
                  beam_args=("--direct_running_mode=multi_threading",))
    assert beam_flags == [["--direct_running_mode=in_memory"],
                    ["--direct_running_mode=multi_threading"]]


def test_eval_config_comes_from_the_evaluation_section():
    from components.evaluate import tfma_config
    from pipeline.core.config import EvaluationConfig

    section = EvaluationConfig(max_perplexity=50.0, slice_features=("domain", "source"),
                               min_slice_size=3, max_slice_bits_per_byte_increase=0.02)
    alone = tfma_config.build_eval_config(section, with_baseline=False)
    assert [list(s.feature_keys) for s in alone.slicing_specs] == [[], ["domain"], ["source"]]
    assert [m.name for m in alone.model_specs] == ["candidate"]
    assert alone.options.min_slice_size.value == 3
    gates = {m.class_name: list(m.per_slice_thresholds) for m in alone.metrics_specs[0].metrics}
    [perplexity] = gates["Perplexity"]
    assert perplexity.threshold.value_threshold.upper_bound.value == 50.0
    assert [list(s.feature_keys) for s in perplexity.slicing_specs] == [[]]
    assert gates["BitsPerByte"] == []  # change thresholds need a baseline
    paired = tfma_config.build_eval_config(section, with_baseline=True)
    assert [(m.name, m.is_baseline) for m in paired.model_specs] == [("candidate", False),
                                                                      ("baseline", True)]
    overall, slices = next(m for m in paired.metrics_specs[0].metrics
                           if m.class_name == "BitsPerByte").per_slice_thresholds
    assert overall.threshold.change_threshold.relative.value == pytest.approx(0.005)
    assert slices.threshold.change_threshold.relative.value == pytest.approx(0.02)
    assert [list(s.feature_keys) for s in slices.slicing_specs] == [["domain"], ["source"]]


@pytest.mark.parametrize("key, value, message", [
    ("length_buckets", [64, 32], "must be increasing token counts > 0, got [64, 32]"),
    ("length_buckets", [0, 8], "must be increasing token counts > 0, got [0, 8]"),
    ("sample_top_p", 0.0, "must be in (0, 1], got 0.0"),
    ("num_samples", -1, "must be >= 0, got -1"),
])
def test_bad_evaluation_settings_are_config_errors(tmp_path, key, value, message):
    from pipeline.core.errors import ConfigError

    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["evaluation"] = {key: value}
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert str(err.value) == f"config key 'evaluation.{key}': {message}"


def test_a_version_whose_card_lacks_the_digest_is_recognised_by_its_files(tmp_path, world):
    import shutil

    serving = tmp_path / "serving"
    config = build_config({**tiny_raw_config(tmp_path, Path("corpus")),
                           "push": {"serving_dir": str(serving)}})
    candidate = world["root"] / "sharp"
    _fake_version(serving, 1, "an-older-model")
    shutil.copytree(candidate / "saved_model", serving / "2")  # no card at all
    baseline = evaluate.resolve_baseline(config, {"model": lm.artifact("Model", candidate, "fp")})
    assert baseline.properties["version"] == 1


def _empty_graph(saved_model: Path) -> None:
    (saved_model / "saved_model.pb").write_bytes(b"")


def _cut_variables(saved_model: Path) -> None:
    for data in (saved_model / "variables").glob("variables.data-*"):
        data.write_bytes(data.read_bytes()[:10])


@pytest.mark.parametrize("damage, problem", [
    (_empty_graph, "saved_model.pb holds no 'serve' graph"),  # seen before TFMA starts
    (lambda path: (path / "variables" / "variables.index").unlink(),
     "variables/variables.index is missing"),
    (_cut_variables, ""),  # seen when TFMA fails: TensorFlow's own words
])
def test_a_baseline_in_service_that_does_not_load_is_named_in_one_line(world, tmp_path, damage,
                                                                        problem):
    """A damaged version in service would fail inside TFMA's Beam workers with their
    tracebacks; evaluate names it instead."""
    import shutil

    broken = world["root"] / f"broken-{damage.__name__}"
    shutil.copytree(world["root"] / "sharp", broken)
    damage(broken / "saved_model")
    with pytest.raises(UsageError) as caught:
        _evaluate(world, tmp_path, "flat", baseline=broken.name)
    message = str(caught.value)
    assert message.startswith(f"push.serving_dir: the model in service at "
                              f"{broken / 'saved_model'} does not load ({problem}")
    assert message.endswith("); move that version out of the serving directory")
    assert "\n" not in message


@pytest.mark.parametrize("metrics, expected", [
    ({"objective": "causal", "overall": {"perplexity": 4.5, "bits_per_byte": 1.25}},
     {"eval_perplexity": 4.5, "eval_unigram_perplexity": None, "eval_bits_per_byte": 1.25,
      "eval_token_accuracy": None, "golden_perplexity": None, "golden_bits_per_byte": None,
      "blessed": False}),
    ({"task": "classification", "overall": {"accuracy": 0.75, "macro_precision": 0.5}},
     {"blessed": False, "eval_accuracy": 0.75, "eval_macro_f1": None, "eval_macro_auc": None}),
    ({"task": "text_to_text", "overall": {"bleu": 31.5}},
     {"blessed": False, "eval_bleu": 31.5, "eval_rouge_l": None, "eval_exact_match": None}),
], ids=["lm", "classification", "text_to_text"])
def test_the_run_summary_holds_the_headline_metrics_of_the_task_type(tmp_path, metrics,
                                                                     expected):
    """latest_run.json's metrics: each task type's own keys, None for what is missing."""
    for name, document in (("evaluation", ("metrics.json", metrics)),
                           ("blessing", ("blessing.json", {"blessed": False}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / document[0]).write_text(json.dumps(document[1]))
    outputs = {name: lm.artifact("x", tmp_path / name, "fp") for name in ("evaluation", "blessing")}
    summary = evaluate.summary(outputs)
    assert summary == expected and list(summary) == list(expected)
    assert evaluate.summary({}) == {"eval_perplexity": None, "eval_unigram_perplexity": None,
                                    "eval_bits_per_byte": None, "eval_token_accuracy": None,
                                    "golden_perplexity": None, "golden_bits_per_byte": None,
                                    "blessed": None}
