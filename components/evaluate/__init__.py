"""evaluate (TFX Evaluator): model + eval TFRecords (+ model in service) -> metrics, blessing.

One code path for every task type; what differs between a language model, a classifier
and a text-to-text task is one object per `task.type` (`components/evaluate/tasks.py`).
TFMA runs the signature the task type names of the export push publishes (`push.variant`)
over the eval split, overall and per slice (each feature of `evaluation.slice_features`;
`length_bucket` is derived from the windows when the examples lack it, see
`components/evaluate/slicing.py`):

    lm              perplexity, bits per byte, token accuracy... (`metrics.py`) of
                    `score_examples`, with the model in service (the latest pushed version
                    that is not this very model) as its baseline; the gate is the
                    `evaluation` section's thresholds; eval document beginnings (from the
                    optional `documents` input) get greedy and sampled continuations
    classification  accuracy, macro and per-class precision/recall/F1, one-vs-rest AUC
                    (`classification.py`) and the confusion matrix of `classify_examples`
    text_to_text    corpus BLEU, ROUGE-L F1 and exact match (`text_metrics.py`) of
                    `generate_examples`' greedy completions, some shown as samples

A fine-tuning task's gate is `task.min_*` (value thresholds on the overall slice); the
model in service is not consulted for it. A report page shows it all.

Outputs:
    evaluation/metrics.json   the metrics document of the task type (`tasks.py` lists its
                              fields); TFMA's wall time is the `tfma_seconds` output property
    evaluation/samples.json   prompts or inputs, the model's text and the reference
                              (`samples.py`)
    evaluation/report.html    the page, with its PNGs beside it
    evaluation/tfma/          TFMA's own results (tfma.load_metrics and friends read them)
    evaluation/golden/tfma/   a language model's: TFMA's results over the golden set's
                              examples (the examples' `golden` split, from
                              `evaluation.golden_inputs`), with the same metrics, slices and
                              baseline as the eval split; metrics.json holds them as
                              `golden`, and the gate is `evaluation.max_golden_*`
    blessing/blessing.json    {"blessed", "failures": [{"metric", "slice", "kind",
                               "threshold", "value", ...}], "ignored_failures",
                               "baseline", "compared_with_service" (true for a language
                               model: push refuses the verdict once another version is in
                               service), "metrics", "slices", "comparison", "candidate",
                               "lineage", "evaluation", "run_id"; a language model's also
                               "objective" and "skipped_thresholds": [{"setting", "value",
                               "metric", "reason"}] (settings that cannot apply to its
                               objective)}: what push needs for the model card
                               (`pipeline/core/contracts/blessing.py`)
"""

from __future__ import annotations

import hashlib
import os
import time

from components.evaluate import tasks
from pipeline.core.artifacts import Artifact
from pipeline.core.component import ComponentSpec
from pipeline.core.errors import UsageError


def resolve_baseline(config, inputs: dict) -> Artifact | None:
    """The model in service to compare with: the newest pushed version that is not the candidate.

    The candidate is recognised by its SavedModel's digest, so a model pushed from a local
    run is itself in a single-component (Vertex) run too. The baseline's fingerprint covers
    the version's path and digest, so a new push changes evaluate's cache key. Only a
    task type that is judged against the model in service has one (a language model).
    """
    from pipeline.core.contracts import serving_dir

    if not _consults_baseline(config):
        return None

    candidate = inputs.get("model")
    version = serving_dir.baseline_for(
        config.push.serving_dir,
        candidate_digest(candidate, config.push.variant) if candidate else None)
    if version is None:
        return None
    path = os.path.abspath(version.path)
    digest = version.digest()
    return Artifact(type="Model", uri=path,
                    fingerprint=hashlib.sha256(f"{path}|{digest}".encode()).hexdigest(),
                    properties={"version": version.number, "model_sha256": digest,
                                "run_id": version.card.get("run_id")})


def candidate_digest(model: Artifact, variant: str = "float") -> str | None:
    """The digest of a model artifact's SavedModel of `variant` (None if it has none)."""
    from pipeline.core.contracts import serving_dir
    from pipeline.core.contracts.model import VARIANT_DIRS, is_saved_model

    path = model.path(VARIANT_DIRS[variant])
    if not is_saved_model(path):
        return None
    return serving_dir.saved_model_digest(path)


def _consults_baseline(config) -> bool:
    return tasks.TASK_TYPES[config.task.type].consults_baseline


SPEC = ComponentSpec(
    name="evaluate",
    module="components.evaluate",
    inputs={"model": "Model", "examples": "Examples", "documents": "Documents",
            "tokenizer": "Tokenizer", "statistics": "Statistics",
            "anomalies": "ExampleAnomalies"},
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
    config=("evaluation", "task", "push"),
    optional_inputs=("documents", "tokenizer", "statistics", "anomalies"),
    resolvers={"baseline": resolve_baseline},
    uses_resolvers=_consults_baseline,
)


def run(inputs, outputs, runtime, evaluation, task, push):
    """Evaluate the candidate (and baseline) with TFMA; write metrics, samples, report, blessing.

    Args:
        inputs: `model`, `examples`; optional `documents` (a language model's eval prompts
            for samples), `tokenizer` (its fingerprint goes into the lineage) and
            `statistics` (the transform's counts of what it left out, for a fine-tuning
            task); `baseline` (None when nothing is in service or the task type is not
            compared with it).
        outputs: `evaluation` and `blessing` directories.
        runtime: the run's `Runtime` (run id, Beam options, logging).
        evaluation: the `EvaluationConfig` section.
        task: the `TaskConfig` section: its type picks the evaluation (`tasks.py`); a
            fine-tuning task's gate.
        push: the `PushConfig` section: `variant` is the export judged (the one push
            publishes); its serving directory holds the baseline (via the resolver).

    Returns:
        Output properties: the headline metrics and the verdict.
    """
    from components.evaluate import blessing, compression, slicing
    from pipeline.core.contracts.blessing import write_blessing, write_metrics
    from pipeline.core.contracts.examples import read_feature_spec

    candidate = _saved_model(inputs["model"], push.variant)
    examples = inputs["examples"].uri
    task_type = tasks.task_for(task, examples, read_feature_spec(examples),
                               compression.read_training(inputs["model"]))
    baseline = inputs.get("baseline")
    derived = slicing.features_to_derive(evaluation.slice_features, examples)
    metrics, failures, seconds = _run_tfma(task_type, inputs, outputs, runtime, evaluation,
                                           candidate, baseline, derived)
    golden_failures, golden_seconds = _evaluate_golden(metrics, task_type, inputs, outputs,
                                                       runtime, evaluation, candidate,
                                                       baseline, derived)
    seconds += golden_seconds
    task_type.add_to_metrics(metrics, inputs, outputs, runtime, evaluation, push.variant,
                             derived)
    write_metrics(outputs["evaluation"], metrics)
    samples = _write_samples(task_type.samples(inputs, candidate, evaluation, runtime),
                             outputs)
    verdict = _verdict(failures, golden_failures, metrics, baseline, evaluation,
                       inputs.get("anomalies"))
    verdict.update(blessing.provenance(inputs, candidate, runtime, task_type.lineage_inputs,
                                       task_type.settings(evaluation, task)),
                   # push publishes only while the baseline is still what is in service
                   compared_with_service=task_type.consults_baseline,
                   **task_type.verdict_fields(metrics, evaluation, runtime))
    write_blessing(outputs["blessing"], verdict)
    task_type.write_report(outputs["evaluation"], metrics, verdict, samples, evaluation)
    headline = {k: metrics["overall"].get(k) for k in task_type.headline}
    runtime.log(f"[evaluate] {task_type.headline_line(headline)}; "
                f"blessed: {verdict['blessed']}; TFMA took {seconds:.1f}s")
    return {"evaluation": {**headline, "tfma_seconds": seconds},
            "blessing": {"blessed": verdict["blessed"]}}


def _run_tfma(task_type, inputs, outputs, runtime, evaluation, candidate: str, baseline,
              derived, split: str = "eval"):
    """TFMA over the eval split (or the golden set's examples, into `golden/tfma/`): the
    metrics document, the failed thresholds, the seconds."""
    from components.evaluate import analysis
    from pipeline.core import files
    from pipeline.core.contracts import serving_dir

    eval_config = task_type.eval_config(evaluation, with_baseline=baseline is not None)
    tfma_dir = files.join(outputs["evaluation"], *TFMA_DIRS[split])
    runtime.log(task_type.start_line(inputs["examples"].uri, baseline)
                + (f" ({split} split)" if split != "eval" else ""))
    if baseline is not None and (problem := serving_dir.damage(baseline.uri)):
        raise UsageError(_unloadable(baseline, problem))
    started = time.perf_counter()
    try:
        analysis.run_tfma(eval_config, candidate=candidate,
                          baseline=baseline.uri if baseline else None,
                          examples_dir=inputs["examples"].uri, output_dir=tfma_dir,
                          beam_args=runtime.beam_args, batch_size=evaluation.batch_size,
                          derived=derived, length_buckets=evaluation.length_buckets,
                          split=split)
    except Exception:
        # Damage `damage` cannot see (variables cut short) fails deep inside TFMA's Beam
        # workers; say so in one line (a full load costs much, so only after a failure).
        problem = serving_dir.load_problem(baseline.uri) if baseline else None
        if problem is None:
            raise
        raise UsageError(_unloadable(baseline, problem)) from None
    seconds = round(time.perf_counter() - started, 3)
    metrics = task_type.metrics_document(tfma_dir, baseline, derived)
    return metrics, analysis.read_validation(tfma_dir), seconds


def _verdict(failures: list[dict], golden_failures: list[dict], metrics: dict, baseline,
             evaluation, anomalies) -> dict:
    """The blessing's verdict from the failed thresholds of the eval split and the golden
    set, with what the data validation warned of (`data_anomalies`, for the report)."""
    from components.evaluate import blessing
    from pipeline.core.contracts.validation import read_anomalies

    verdict = blessing.decide(failures, metrics,
                              slice_gate_min_examples=evaluation.slice_gate_min_examples,
                              baseline=_describe(baseline))
    if golden_failures:
        blessing.add_golden(verdict, golden_failures, metrics["golden"],
                            slice_gate_min_examples=evaluation.slice_gate_min_examples)
    if anomalies is not None:
        verdict["data_anomalies"] = read_anomalies(anomalies.uri)
    return verdict


def _evaluate_golden(metrics: dict, task_type, inputs, outputs, runtime, evaluation,
                     candidate: str, baseline, derived) -> tuple[list[dict], float]:
    """TFMA over the golden set's examples when there are any (into `metrics["golden"]`):
    the failed thresholds of the golden gate and the seconds."""
    from pipeline.core.contracts import documents
    from pipeline.core.contracts.examples import read_feature_spec

    splits = read_feature_spec(inputs["examples"].uri).get("splits", {})
    if documents.GOLDEN_SPLIT not in splits:
        return [], 0.0
    metrics["golden"], failures, seconds = _run_tfma(
        task_type, inputs, outputs, runtime, golden_gate(evaluation), candidate, baseline,
        derived, split=documents.GOLDEN_SPLIT)
    return failures, seconds


# Where TFMA writes its results, per split evaluated (below `evaluation/`).
TFMA_DIRS = {"eval": ("tfma",), "golden": ("golden", "tfma")}


def golden_gate(evaluation):
    """The `evaluation` section as the golden set's gate: its own thresholds
    (`max_golden_perplexity`, `max_golden_bits_per_byte_increase`), no slice thresholds;
    the slices and the rest as for the eval split."""
    from dataclasses import replace

    return replace(evaluation, max_perplexity=evaluation.max_golden_perplexity,
                   max_bits_per_byte_increase=evaluation.max_golden_bits_per_byte_increase,
                   max_slice_bits_per_byte_increase=None)


def _unloadable(baseline: Artifact, problem: str) -> str:
    return (f"push.serving_dir: the model in service at {baseline.uri} does not load "
            f"({problem}); move that version out of the serving directory")


def _write_samples(samples: dict, outputs) -> dict:
    from components.evaluate.samples import SAMPLES_FILE
    from pipeline.core import files

    files.write_json(files.join(outputs["evaluation"], SAMPLES_FILE), samples)
    return samples


def _saved_model(model: Artifact, variant: str = "float") -> str:
    """The candidate's SavedModel of `variant` (any Beam filesystem).

    Raises:
        UsageError: the model artifact has none.
    """
    from pipeline.core.contracts.model import VARIANT_DIRS, is_saved_model

    path = model.path(VARIANT_DIRS[variant])
    if not is_saved_model(path):
        raise UsageError(f"{model.uri}: no SavedModel at {VARIANT_DIRS[variant]}/"
                         + (" (push.variant quantized needs train.quantize int8)"
                            if variant == "quantized" else ""))
    return path


def _describe(baseline: Artifact | None) -> dict | None:
    if baseline is None:
        return None
    return {"uri": baseline.uri, "fingerprint": baseline.fingerprint, **baseline.properties}


def summary(outputs: dict) -> dict:
    """Run-level metrics for latest_run.json (None for what was not computed): a language
    model's perplexity, unigram perplexity, bits per byte and token accuracy, or a
    fine-tuning task's headline metrics; and whether the model was blessed.

    Args:
        outputs: evaluate's output artifacts (`evaluation`, `blessing`).

    Returns:
        Metric name -> value.
    """
    from pipeline.core.contracts.blessing import read_outputs

    metrics, verdict = read_outputs(outputs.get("evaluation"), outputs.get("blessing"))
    return tasks.summary(metrics, verdict)
