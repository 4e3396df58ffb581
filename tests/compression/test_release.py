"""The recipe end to end through the real components: a teacher is evaluated and pushed, a
student is distilled from `latest_pushed` with an int8 export, evaluated as that export
with the teacher beside it, and pushed as `push.variant: quantized`."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.config import DistillConfig
from tests.compression import helpers
from tests.conftest import build_config, tiny_raw_config
from tests.report_reader import lookup, read_report


def _config(root: Path, **push):
    raw = tiny_raw_config(root, Path("corpus"))
    raw["evaluation"] = {"num_samples": 0, "slice_features": [], "batch_size": 8,
                         "max_bits_per_byte_increase": None}
    raw["push"] = {**raw["push"], **push}
    raw["train"] = {**raw["train"], "quantize": "int8"}
    return build_config(raw)


def _evaluate(root: Path, model: Path, config, name: str, baseline=True):
    from components import evaluate
    from pipeline.local_runner import Runtime

    inputs = {"model": helpers.artifact("Model", model),
              "examples": helpers.artifact("Examples", root / "examples"),
              "documents": None, "tokenizer": None}
    inputs["baseline"] = evaluate.resolve_baseline(config, inputs) if baseline else None
    outputs = {out: root / name / out for out in evaluate.SPEC.outputs}
    for path in outputs.values():
        path.mkdir(parents=True)
    evaluate.run(inputs, {k: str(v) for k, v in outputs.items()},
                 Runtime(run_id=name, root=str(root), beam_args=config.pipeline.beam_args),
                 evaluation=config.evaluation, task=config.task, push=config.push)
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    return metrics, outputs


def _push(root: Path, model: Path, outputs: dict, config, name: str) -> dict:
    from components import push
    from pipeline.local_runner import Runtime

    out = root / name / "pushed"
    out.mkdir(parents=True)
    push.run({"model": helpers.artifact("Model", model),
              "blessing": helpers.artifact("ModelBlessing", outputs["blessing"])},
             {"pushed": str(out)}, Runtime(run_id=name, root=str(root)), push=config.push)
    return json.loads((out / "push.json").read_text())


def _direct_sums(saved_model: Path, examples: Path) -> dict:
    """The eval split through `score_examples`, summed here (independently of TFMA)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    model = tf.saved_model.load(str(saved_model))
    sums = {"nll": 0.0, "num_tokens": 0.0, "num_bytes": 0.0}
    files = sorted(str(p) for p in examples.glob("eval-*.tfrecord"))
    for records in tf.data.TFRecordDataset(files).batch(8):
        out = model.signatures["score_examples"](examples=records)
        for key in sums:
            sums[key] += float(tf.reduce_sum(tf.cast(out[key], tf.float64)))
    return sums


def _assert_matches(metrics: dict, sums: dict) -> None:
    assert metrics["token_count"] == sums["num_tokens"]
    assert metrics["mean_nll"] == pytest.approx(sums["nll"] / sums["num_tokens"], rel=1e-6)
    assert metrics["bits_per_byte"] == pytest.approx(
        sums["nll"] / math.log(2) / sums["num_bytes"], rel=1e-6)


@pytest.mark.slow
def test_distill_from_the_pushed_teacher_and_ship_the_int8_student(trained):
    from pipeline.core.contracts import serving_dir
    from components.train import resolve_teacher

    root, teacher_model, _ = trained
    root = root / "release"
    root.mkdir()
    for name in ("tokenizer", "examples"):
        (root / name).symlink_to(trained[0] / name, target_is_directory=True)
    float_config = _config(root)
    quantized = _config(root, variant="quantized")

    # 1. The teacher is evaluated and pushed as it is (float): version 1.
    _, outputs = _evaluate(root, teacher_model, float_config, "teacher")
    assert _push(root, teacher_model, outputs, float_config, "teacher")["version"] == 1

    # 2. The student is distilled from latest_pushed and exported in int8 too.
    distilled = replace(quantized, train=replace(
        quantized.train, distill=DistillConfig(teacher="latest_pushed", alpha=0.5)))
    dag_inputs = {"examples": helpers.artifact("Examples", root / "examples"),
                  "tokenizer": helpers.artifact("Tokenizer", root / "tokenizer"),
                  "hyperparameters": None, "warm_start": None}
    teacher = resolve_teacher(distilled, dag_inputs)
    assert teacher.uri == str(root / "serving" / "1")
    student = root / "student"
    summary = helpers.run_train(root, student, train=replace(
        helpers.TRAIN, steps=10, quantize="int8", distill=distilled.train.distill),
        teacher=teacher)
    assert summary["distill"]["teacher"]["version"] == 1

    # 3. Evaluated as its int8 export; the teacher (the baseline too) is the reference.
    metrics, outputs = _evaluate(root, student, quantized, "student")
    _assert_matches(metrics["overall"], _direct_sums(student / "saved_model_int8",
                                                     root / "examples"))
    assert metrics["variant"] == {"name": "quantized", "directory": "saved_model_int8",
                                  **summary["variants"]["quantized"]}
    reference = metrics["teacher"]
    assert reference["source"] == "baseline" and reference["version"] == 1
    assert reference["overall"] == metrics["baseline"]["overall"]
    _assert_matches(reference["overall"], _direct_sums(teacher_model / "saved_model",
                                                       root / "examples"))
    bpb = reference["comparison"]["bits_per_byte"]
    assert (bpb["candidate"], bpb["teacher"]) == (metrics["overall"]["bits_per_byte"],
                                                  reference["overall"]["bits_per_byte"])
    assert bpb["relative_change"] == pytest.approx((bpb["candidate"] - bpb["teacher"])
                                                   / bpb["teacher"])
    cells, text = read_report(outputs["evaluation"] / "report.html")
    shown = {tuple(c["path"]): float(c["data-value"]) for c in cells if "data-value" in c}
    assert shown[("teacher", "comparison", "perplexity", "teacher")] == lookup(
        metrics, ["teacher", "comparison", "perplexity", "teacher"])
    assert shown[("variant", "variables_bytes")] == metrics["variant"]["variables_bytes"]
    assert "Distilled from" in text and "not part of the gate" in text

    # Without a baseline the teacher gets a TFMA run of its own: the same numbers.
    alone, _ = _evaluate(root, student, quantized, "student-alone", baseline=False)
    assert alone["teacher"]["source"] == "tfma"
    _assert_matches(alone["teacher"]["overall"], _direct_sums(teacher_model / "saved_model",
                                                              root / "examples"))

    # 4. The int8 export is what gets pushed, and the card says so.
    record = _push(root, student, outputs, quantized, "student")
    assert record["version"] == 2
    version = serving_dir.versions(str(root / "serving"))[-1]
    assert version.digest() == serving_dir.saved_model_digest(str(student / "saved_model_int8"))
    assert version.card["variant"] == "quantized"
    # A rerun of the same execution finds its own student in service and keeps its teacher.
    assert resolve_teacher(distilled, dag_inputs) == teacher

    # 5. The int8 student in service can teach in turn: rebuilt in int8 (its recorded mode)
    # under the strategy, it scores the eval split as the pushed SavedModel did in TFMA.
    another = replace(distilled, model=replace(distilled.model, num_heads=1))
    next_teacher = resolve_teacher(another, dag_inputs)
    assert next_teacher.uri == str(root / "serving" / "2")
    again = helpers.run_train(root, root / "student2", train=replace(
        helpers.TRAIN, steps=6, distill=distilled.train.distill), teacher=next_teacher)
    assert again["distill"]["teacher"]["variant"] == "quantized"
    assert again["distill"]["teacher"]["eval_loss"] == pytest.approx(
        metrics["overall"]["mean_nll"], rel=1e-5)
