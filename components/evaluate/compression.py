"""What evaluate reports about a compressed candidate: which export it judged, and how it
compares with the teacher it was distilled from.

The teacher is an additional reference, never part of the gate. Its numbers come from
TFMA too (the same metrics over the same eval split): when the teacher is the baseline
itself (the same SavedModel, by digest), the baseline's metrics are reused; otherwise a
second TFMA run evaluates the teacher alone into `evaluation/tfma_teacher/`.
"""

from __future__ import annotations

import os

from components.evaluate.blessing import compare
from pipeline.core.artifacts import Artifact
from pipeline.core.contracts.model import SUMMARY_FILE

TEACHER_TFMA_DIR = "tfma_teacher"


def add_to_metrics(metrics: dict, training: dict, inputs: dict, outputs: dict, runtime,
                   evaluation, variant: str, derived: tuple[str, ...]) -> None:
    """Add `variant` and `teacher` (None without one) to evaluate's metrics document.

    Args:
        metrics: the metrics document (changed in place).
        training: the candidate's train summary (`read_training`).
        inputs, outputs, runtime: evaluate's.
        evaluation: the `EvaluationConfig` section.
        variant: `push.variant`, the export evaluated.
        derived: slice features evaluate derives (for the teacher's TFMA run).
    """
    from components.evaluate import analysis, tfma_config
    from pipeline.core import files

    def run_alone(saved_model: str, name: str) -> dict:
        runtime.log(f"[evaluate] TFMA over the teacher {saved_model}")
        output = files.join(outputs["evaluation"], name)
        # The teacher shares the candidate's objective (distillation checks it).
        eval_config = tfma_config.build_eval_config(evaluation, with_baseline=False,
                                                    objective=metrics["objective"])
        analysis.run_tfma(eval_config,
                          candidate=saved_model, baseline=None,
                          examples_dir=inputs["examples"].uri, output_dir=output,
                          beam_args=runtime.beam_args, batch_size=evaluation.batch_size,
                          derived=derived, length_buckets=evaluation.length_buckets)
        return analysis.read_metrics(output).get(tfma_config.CANDIDATE,
                                                 {"overall": {}, "slices": {}})

    metrics["variant"] = variant_record(training, variant)
    metrics["teacher"] = teacher_reference(training, metrics, inputs.get("baseline"), run_alone)


def read_training(model: Artifact) -> dict:
    """The model artifact's `train_summary.json` ({} when it has none)."""
    from pipeline.core import files

    try:
        summary = files.read_json(files.join(model.uri, SUMMARY_FILE))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def variant_record(training: dict, variant: str) -> dict:
    """The export evaluate judges: its name and, as training measured them, its parameters,
    int8 weights and sizes."""
    from pipeline.core.contracts.model import VARIANT_DIRS

    measured = (training.get("variants") or {}).get(variant) or {}
    return {"name": variant, "directory": VARIANT_DIRS[variant], **measured}


def teacher_saved_model(source: str) -> str | None:
    """The SavedModel of a teacher source (a SavedModel, model artifact or `.keras` file
    beside a `saved_model/`), or None when there is none."""
    from pipeline.core.contracts.model import find_saved_model

    return find_saved_model(source if os.path.isdir(source) else os.path.dirname(source))


def teacher_reference(training: dict, metrics: dict, baseline: Artifact | None,
                      run_tfma) -> dict | None:
    """The teacher's metrics beside the candidate's, or None for a model without a teacher.

    Args:
        training: the candidate's train summary.
        metrics: the candidate's metrics document so far (overall, slices, baseline).
        baseline: the baseline input, or None.
        run_tfma: function(saved_model_dir, output_name) -> {"overall", "slices"}, TFMA
            over the eval split for one model.

    Returns:
        {"uri", "version", "saved_model_sha256", "parameters", "source" (`baseline` or
        `tfma`), "overall", "slices", "comparison" {metric: {candidate, teacher, change,
        relative_change}}}, or {"uri", "skipped": reason} when it cannot be evaluated.
    """
    from pipeline.core.contracts import serving_dir

    record = (training.get("distill") or {}).get("teacher")
    if not record:
        return None
    uri = record.get("source")
    saved_model = teacher_saved_model(uri) if uri else None
    if saved_model is None:
        return {"uri": uri, "skipped": f"no SavedModel at {uri} any more"}
    digest = record.get("model_sha256") or serving_dir.saved_model_digest(saved_model)
    described = {"uri": uri, "version": record.get("version"), "saved_model_sha256": digest,
                 "parameters": record.get("parameters")}
    base = metrics.get("baseline")
    if baseline is not None and base and baseline.properties.get("model_sha256") == digest:
        found, source = {"overall": base["overall"], "slices": base.get("slices", {})}, "baseline"
    else:
        found, source = run_tfma(saved_model, TEACHER_TFMA_DIR), "tfma"
    return {**described, "source": source, **found,
            "comparison": compare(metrics["overall"], found["overall"], "teacher")}
