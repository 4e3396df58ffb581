"""evaluate for the fine-tuning tasks: model + eval examples -> TFMA metrics, blessing.

The DAG runs this module as its `evaluate` node when `task.type` is `classification` or
`text_to_text` (`pipeline/dag.py`); `components/evaluate/__init__.py` evaluates language models.
TFMA runs the task signature of the candidate's export that push publishes (`push.variant`)
over the eval split, overall and by each of `evaluation.slice_features`
(`components/evaluate/task_analysis.py`):

    classification  accuracy, macro and per-class precision/recall/F1, one-vs-rest AUC
                    (`evaluation/classification.py`) and the confusion matrix plot
    text_to_text    corpus BLEU, ROUGE-L F1 and exact match of greedy completions
                    (`evaluation/text_metrics.py`)

The gate is `task.min_*` (value thresholds on the overall slice). There is no baseline
comparison for the tasks yet: a model in service is not consulted.

Outputs:
    evaluation/metrics.json   {"task", "overall", "classes", "slices", "confusion"
                               (classification), "excluded" (the eval documents the
                               transform left out, by reason and unknown label),
                               "baseline": null, "comparison": null}
    evaluation/samples.json   text_to_text: inputs, greedy completions and references
    evaluation/report.html    the page, with confusion_matrix.png beside it
    evaluation/tfma/          TFMA's own results
    blessing/blessing.json    as `components/evaluate/__init__.py` writes it (push reads it)
"""

from __future__ import annotations

import json
import os
import time

from pipeline.core.artifacts import Artifact
from pipeline.core.component import ComponentSpec
from pipeline.core.errors import UsageError

METRICS_FILE = "metrics.json"
BLESSING_FILE = "blessing.json"
SAMPLES_FILE = "samples.json"

SPEC = ComponentSpec(
    name="evaluate",
    module="components.evaluate.task",
    inputs={"model": "Model", "examples": "Examples", "tokenizer": "Tokenizer",
            "statistics": "Statistics"},
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
    config=("evaluation", "task", "push"),
    optional_inputs=("tokenizer", "statistics"),
)


def run(inputs, outputs, runtime, evaluation, task, push):
    """Evaluate the candidate with TFMA; write metrics, samples, report and blessing.

    Args:
        inputs: `model`, `examples`; optional `tokenizer` (lineage) and `statistics`
            (the transform's counts of what it left out).
        outputs: `evaluation` and `blessing` directories.
        runtime: the run's `Runtime`.
        evaluation: the `EvaluationConfig` (slices, min slice size, batch size, samples).
        task: the `TaskConfig` (type, gate).
        push: the `PushConfig`: `variant` is the export judged, the one push publishes.

    Returns:
        Output properties: the headline metrics and the verdict.
    """
    from components.evaluate import blessing, task_analysis, task_report
    from pipeline.core import files
    from pipeline.core.configio import to_dict

    candidate = _saved_model(inputs["model"], push.variant)
    spec = _task_entry(inputs["examples"], task)
    labels = spec.get("labels", [])
    metrics, failures, seconds = _run_tfma(inputs, outputs, runtime, evaluation, task,
                                           candidate, labels)
    metrics["excluded"] = _excluded(inputs.get("statistics"))
    files.write_json(files.join(outputs["evaluation"], METRICS_FILE), metrics)
    samples = _samples(candidate, inputs["examples"].uri, evaluation, task)
    files.write_json(files.join(outputs["evaluation"], SAMPLES_FILE), samples)
    verdict = blessing.decide(failures, metrics,
                              slice_gate_min_examples=evaluation.slice_gate_min_examples,
                              baseline=None)
    verdict.update(blessing.provenance(inputs, candidate, runtime, ("examples", "tokenizer"),
                                       {**to_dict(evaluation), "task": to_dict(task)}),
                   comparison=None, slices=metrics["slices"])
    files.write_json(files.join(outputs["blessing"], BLESSING_FILE), verdict)
    task_report.write_report(outputs["evaluation"], metrics=metrics, verdict=verdict,
                             samples=samples, evaluation=evaluation, labels=labels)
    headline = {k: metrics["overall"].get(k) for k in task_analysis.headline(task.type)}
    runtime.log(f"[evaluate] {task.type} {headline}; blessed: {verdict['blessed']}; "
                f"TFMA took {seconds:.1f}s")
    return {"evaluation": {**headline, "tfma_seconds": seconds},
            "blessing": {"blessed": verdict["blessed"]}}


def _saved_model(model: Artifact, variant: str) -> str:
    from pipeline.core.contracts.model import VARIANT_DIRS

    path = model.path(VARIANT_DIRS[variant])
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UsageError(f"{model.uri}: no SavedModel at {VARIANT_DIRS[variant]}/ "
                         f"(push.variant {variant})")
    return path


def _task_entry(examples: Artifact, task) -> dict:
    from components.evaluate.analysis import read_feature_spec

    entry = read_feature_spec(examples.uri).get("task") or {}
    if entry.get("type") != task.type:
        raise UsageError(f"task.type is {task.type!r} but {examples.uri} holds examples for "
                         f"{entry.get('type', 'lm')!r}")
    return entry


def _slice_features(examples_dir: str, evaluation) -> list[str]:
    """The configured slice features the examples carry as one-value features."""
    from components.evaluate.analysis import read_feature_spec

    features = read_feature_spec(examples_dir)["features"]
    return [name for name in evaluation.slice_features
            if features.get(name, {}).get("shape") == [1]]


def _run_tfma(inputs, outputs, runtime, evaluation, task, candidate: str, labels: list[str]):
    from components.evaluate import analysis, task_analysis
    from pipeline.core import files

    examples = inputs["examples"].uri
    eval_config = task_analysis.build_eval_config(
        task, evaluation, _slice_features(examples, evaluation), len(labels) or None)
    tfma_dir = files.join(outputs["evaluation"], "tfma")
    runtime.log(f"[evaluate] TFMA ({task.type}) over {examples}")
    started = time.perf_counter()
    analysis.run_tfma(eval_config, candidate=candidate, baseline=None, examples_dir=examples,
                      output_dir=tfma_dir, beam_args=runtime.beam_args,
                      batch_size=evaluation.batch_size)
    seconds = round(time.perf_counter() - started, 3)
    metrics = {"task": task.type, **task_analysis.read_metrics(tfma_dir, labels),
               "baseline": None, "diff": None, "comparison": None}
    if not metrics["overall"].get("example_count"):
        raise RuntimeError(f"TFMA computed no examples: {metrics['overall']}")
    if task.type == "classification":
        metrics["confusion"] = {"labels": labels,
                                **task_analysis.read_confusion(tfma_dir, len(labels))}
    return metrics, analysis.read_validation(tfma_dir), seconds


def _excluded(statistics: Artifact | None) -> dict | None:
    """The eval documents the transform left out (by reason, and unknown labels by name)."""
    if statistics is None:
        return None
    try:
        with open(statistics.path("stats.json"), encoding="utf-8") as f:
            split = json.load(f)["splits"]["eval"]
    except (OSError, ValueError, KeyError):
        return None
    return {"documents": split.get("documents"), "dropped": split.get("dropped"),
            "unknown_labels": split.get("unknown_labels")}


def _samples(candidate: str, examples_dir: str, evaluation, task) -> dict:
    """text_to_text: greedy completions of the first eval examples beside their references."""
    if task.type != "text_to_text" or evaluation.num_samples == 0:
        return {"skipped": "classification" if task.type != "text_to_text"
                else "evaluation.num_samples is 0", "samples": []}
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the tokenizer's ops)

    from components.evaluate.analysis import eval_files

    pattern, compression = eval_files(examples_dir)
    records = (tf.data.TFRecordDataset(tf.io.gfile.glob(pattern),
                                       compression_type="GZIP" if compression == "gzip" else "")
               .take(evaluation.num_samples))
    serialized = [record.numpy() for record in records]
    signature = tf.saved_model.load(candidate).signatures["generate_examples"]
    predictions = signature(examples=tf.constant(serialized))["prediction"].numpy()
    text = {"input_text": tf.io.FixedLenFeature([], tf.string),
            "target_text": tf.io.FixedLenFeature([], tf.string)}
    samples = []
    for record, prediction in zip(serialized, predictions):
        parsed = tf.io.parse_single_example(record, text)
        samples.append({"input": parsed["input_text"].numpy().decode("utf-8", "replace"),
                        "reference": parsed["target_text"].numpy().decode("utf-8", "replace"),
                        "completion": prediction.decode("utf-8", "replace")})
    return {"decoding": "greedy", "samples": samples}


def summary(outputs: dict) -> dict:
    """Run-level metrics for latest_run.json: the verdict and the task's headline metrics."""
    from pipeline.core.files import read_artifact_json

    metrics = read_artifact_json(outputs.get("evaluation"), METRICS_FILE) or {}
    verdict = read_artifact_json(outputs.get("blessing"), BLESSING_FILE) or {}
    overall = metrics.get("overall", {})
    names = (("accuracy", "macro_f1", "macro_auc") if metrics.get("task") == "classification"
             else ("bleu", "rouge_l", "exact_match"))
    return {"blessed": verdict.get("blessed"), **{f"eval_{n}": overall.get(n) for n in names}}
