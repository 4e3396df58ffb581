"""evaluate: TFMA's numbers against NumPy on a hand-built bigram model, slicing, the gate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from components import evaluate
from components.evaluation import serving_dir
from pipeline.errors import UsageError
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm
from tests.conftest import build_config, tiny_raw_config

SEQUENCE_LENGTH = 16
REL = 1e-4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eval examples (gzip shards) and two models: `sharp` (worse here) and `flat` (better)."""
    root = tmp_path_factory.mktemp("evaluate")
    records = lm.make_records(90, SEQUENCE_LENGTH, seed=7)
    lm.write_examples(root / "examples", records, SEQUENCE_LENGTH, compression="gzip", shards=3)
    tables = {
        "sharp": lm.write_bigram_model(root / "sharp", seed=1, sequence_length=SEQUENCE_LENGTH),
        "flat": lm.write_bigram_model(root / "flat", seed=2, sequence_length=SEQUENCE_LENGTH,
                                      sharpness=0.5),
    }
    return {"root": root, "records": records, "tables": tables}


def _evaluate(world, tmp_path, model: str, baseline: str | None = None, **evaluation):
    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["evaluation"] = evaluation
    config = build_config(raw)
    inputs = {"model": lm.artifact("Model", world["root"] / model, f"fp-{model}"),
              "examples": lm.artifact("Examples", world["root"] / "examples", "fp-examples"),
              "baseline": (lm.artifact("Model", world["root"] / baseline / "saved_model",
                                       f"fp-{baseline}") if baseline else None)}
    outputs = {name: tmp_path / name for name in evaluate.SPEC.outputs}
    for path in outputs.values():
        path.mkdir()
    runtime = Runtime(run_id="test", root=str(tmp_path), beam_args=config.pipeline.beam_args)
    evaluate.run(inputs, {k: str(v) for k, v in outputs.items()}, runtime,
                 evaluation=config.evaluation, push=config.push)
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    verdict = json.loads((outputs["blessing"] / "blessing.json").read_text())
    return metrics, verdict, outputs


def _assert_metrics_equal(actual: dict, expected: dict) -> None:
    assert actual["example_count"] == expected["example_count"]
    assert actual["token_count"] == expected["token_count"]
    for name in ("mean_nll", "perplexity", "bits_per_byte", "token_accuracy"):
        assert actual[name] == pytest.approx(expected[name], rel=REL), name


def test_metrics_match_numpy_overall_and_per_domain(world, tmp_path):
    metrics, verdict, outputs = _evaluate(world, tmp_path, "sharp", max_perplexity=None)
    table, records = world["tables"]["sharp"], world["records"]
    _assert_metrics_equal(metrics["overall"], lm.reference_metrics(table, records))
    assert set(metrics["slices"]) == {"domain=math", "domain=os", "domain=json"}
    for name, values in metrics["slices"].items():
        domain = name.split("=", 1)[1]
        subset = [r for r in records if r["domain"] == domain]
        _assert_metrics_equal(values, lm.reference_metrics(table, subset))
    assert metrics["overall"]["perplexity"] == pytest.approx(
        math.exp(metrics["overall"]["mean_nll"]), rel=1e-12)
    assert verdict == {"blessed": True, "failures": [], "ignored_failures": [], "baseline": None,
                       "metrics": metrics["overall"]}
    assert metrics["baseline"] is None
    assert (outputs["evaluation"] / "tfma" / "eval_config.json").is_file()
    summary = evaluate.summary({name: lm.artifact("x", path, "fp") for name, path in outputs.items()})
    assert summary == {"eval_perplexity": metrics["overall"]["perplexity"],
                       "eval_bits_per_byte": metrics["overall"]["bits_per_byte"],
                       "eval_token_accuracy": metrics["overall"]["token_accuracy"],
                       "blessed": True}


@pytest.mark.parametrize("factor, blessed", [(0.99, False), (1.01, True)])
def test_perplexity_value_threshold(world, tmp_path, factor, blessed):
    expected = lm.reference_metrics(world["tables"]["sharp"], world["records"])["perplexity"]
    bound = expected * factor
    _, verdict, _ = _evaluate(world, tmp_path, "sharp", max_perplexity=bound)
    assert verdict["blessed"] is blessed
    if blessed:
        assert verdict["failures"] == []
    else:
        # Only the overall slice is bounded, though every domain slice exceeds it too.
        [failure] = verdict["failures"]
        assert failure["metric"] == "perplexity" and failure["slice"] == "overall"
        assert failure["kind"] == "value"
        assert failure["threshold"]["valueThreshold"]["upperBound"] == pytest.approx(bound)
        assert failure["value"] == pytest.approx(expected, rel=REL)


def _relative_worsening(world) -> float:
    sharp = lm.reference_metrics(world["tables"]["sharp"], world["records"])["bits_per_byte"]
    flat = lm.reference_metrics(world["tables"]["flat"], world["records"])["bits_per_byte"]
    assert sharp > flat
    return (sharp - flat) / flat


@pytest.mark.parametrize("factor, blessed", [(0.99, False), (1.01, True)])
def test_change_threshold_is_relative_to_the_baseline(world, tmp_path, factor, blessed):
    limit = _relative_worsening(world) * factor
    metrics, verdict, _ = _evaluate(world, tmp_path, "sharp", baseline="flat",
                                    max_bits_per_byte_increase=limit)
    _assert_metrics_equal(metrics["baseline"]["overall"],
                          lm.reference_metrics(world["tables"]["flat"], world["records"]))
    worse = metrics["overall"]["bits_per_byte"] - metrics["baseline"]["overall"]["bits_per_byte"]
    assert metrics["diff"]["overall"]["bits_per_byte"] == pytest.approx(worse, rel=REL)
    assert verdict["baseline"]["uri"].endswith("saved_model")
    assert verdict["blessed"] is blessed
    if not blessed:
        [failure] = verdict["failures"]
        assert (failure["metric"], failure["slice"], failure["kind"]) == (
            "bits_per_byte", "overall", "change")
        assert failure["threshold"]["changeThreshold"]["relative"] == pytest.approx(limit)
        assert failure["value"] == pytest.approx(worse, rel=REL)


def test_better_candidate_passes_change_threshold(world, tmp_path):
    metrics, verdict, _ = _evaluate(world, tmp_path, "flat", baseline="sharp",
                                    max_bits_per_byte_increase=0.0,
                                    max_slice_bits_per_byte_increase=0.0,
                                    slice_gate_min_examples=1)
    assert metrics["diff"]["overall"]["bits_per_byte"] < 0
    assert all(values["bits_per_byte"] < 0 for values in metrics["diff"]["slices"].values())
    assert verdict["blessed"] is True and verdict["failures"] == []


def test_slice_change_threshold_ignores_small_slices(world, tmp_path):
    _, verdict, _ = _evaluate(world, tmp_path, "sharp", baseline="flat",
                              max_bits_per_byte_increase=None,
                              max_slice_bits_per_byte_increase=0.0, slice_gate_min_examples=31)
    # Each domain slice got 30 examples: all worse, all too small to count.
    assert verdict["blessed"] is True
    assert sorted(f["slice"] for f in verdict["ignored_failures"]) == [
        "domain=json", "domain=math", "domain=os"]


def _fake_version(directory: Path, number: int, fingerprint: str) -> None:
    path = directory / str(number)
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    (path / serving_dir.MODEL_CARD).write_text(json.dumps({"model_fingerprint": fingerprint}))


def test_baseline_resolver_never_picks_the_candidate_itself(tmp_path):
    serving = tmp_path / "serving"
    config = build_config({**tiny_raw_config(tmp_path, Path("corpus")),
                           "push": {"serving_dir": str(serving)}})
    candidate = {"model": lm.artifact("Model", tmp_path / "model", "fp-candidate")}
    assert evaluate.resolve_baseline(config, candidate) is None
    _fake_version(serving, 1, "fp-old")
    _fake_version(serving, 2, "fp-candidate")
    (serving / "3").mkdir()  # incomplete: no saved_model.pb
    baseline = evaluate.resolve_baseline(config, candidate)
    assert baseline.uri == str(serving / "1") and baseline.properties["version"] == 1
    other = evaluate.resolve_baseline(config, {"model": lm.artifact("Model", tmp_path, "fp-new")})
    assert other.properties == {"version": 2, "model_fingerprint": "fp-candidate"}
    assert other.fingerprint != baseline.fingerprint


def test_model_without_saved_model_is_a_usage_error(tmp_path):
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(UsageError, match="no SavedModel"):
        evaluate._saved_model(lm.artifact("Model", tmp_path / "empty_model", "fp"))


def test_examples_artifact_problems_are_usage_errors(tmp_path):
    from components.evaluation.analysis import eval_files

    with pytest.raises(UsageError, match="unreadable feature spec"):
        eval_files(str(tmp_path))
    (tmp_path / "feature_spec.json").write_text(json.dumps({"sequence_length": 8,
                                                            "compression": "zstd"}))
    with pytest.raises(UsageError, match="no eval shards"):
        eval_files(str(tmp_path))
    (tmp_path / "eval-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(UsageError, match="compression must be none or gzip, got 'zstd'"):
        eval_files(str(tmp_path))
    (tmp_path / "feature_spec.json").write_text(json.dumps({"sequence_length": 8,
                                                            "compression": "none"}))
    assert eval_files(str(tmp_path)) == (str(tmp_path / "eval-*.tfrecord"), "uncompressed")


def test_eval_config_comes_from_the_evaluation_section():
    from components.evaluation import tfma_config
    from pipeline.config import EvaluationConfig

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
