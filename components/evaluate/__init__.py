"""evaluate (TFX Evaluator): model + eval TFRecords (+ model in service) -> metrics, blessing.

TFMA runs the candidate's `score_examples` signature over the eval split, with the model in
service (the latest pushed version that is not this very model) as its baseline, and
computes the LM metrics of `components.evaluate.metrics` overall and per slice (each
feature of `evaluation.slice_features`; `length_bucket` is derived from the windows when
the examples lack it, see `components.evaluate.slicing`). The thresholds of
the `evaluation` section decide the blessing. Eval document beginnings (from the optional
`documents` input) get greedy and sampled continuations. A report page shows it all.

Outputs:
    evaluation/metrics.json   {"overall": {...}, "slices": {"domain=x": {...}},
                               "baseline": {"overall", "slices"} | null, "diff": ... | null,
                               "comparison": {metric: {candidate, baseline, change,
                               relative_change}} | null,
                               "derived_slice_features": [names evaluate derived],
                               "objective": `causal` or `masked` (bert: perplexity, mean
                               NLL and accuracy over the masked tokens; bits_per_byte
                               null, see components/evaluate/objective.py),
                               "variant": the export judged (`push.variant`: float
                               saved_model/ or quantized saved_model_int8/) and its sizes,
                               "teacher": a distilled model's teacher, TFMA's metrics beside
                               the candidate's (not gated) | null; see
                               components/evaluate/compression.py}
                              (TFMA's wall time is the `tfma_seconds` output property)
    evaluation/samples.json   prompts, continuations, ROUGE-L and BLEU (see samples.py)
    evaluation/report.html    the page, with its PNGs beside it
    evaluation/tfma/          TFMA's own results (tfma.load_metrics and friends read them)
    blessing/blessing.json    {"blessed", "failures": [{"metric", "slice", "kind",
                               "threshold", "value", ...}], "ignored_failures",
                               "skipped_thresholds": [{"setting", "value", "metric",
                               "reason"}] (settings that cannot apply to the objective),
                               "objective", "baseline", "metrics", "slices", "comparison",
                               "candidate", "lineage", "evaluation", "run_id"}: what push
                               needs for the model card
"""

from __future__ import annotations

import hashlib
import os
import time

from pipeline.core.artifacts import Artifact
from pipeline.core.component import ComponentSpec
from pipeline.core.errors import UsageError

METRICS_FILE = "metrics.json"
BLESSING_FILE = "blessing.json"
HEADLINE = ("perplexity", "bits_per_byte", "token_accuracy")


def resolve_baseline(config, inputs: dict) -> Artifact | None:
    """The model in service to compare with: the newest pushed version that is not the candidate.

    The candidate is recognised by its SavedModel's digest, so a model pushed from a local
    run is itself in a single-component (Vertex) run too. The baseline's fingerprint covers
    the version's path and digest, so a new push changes evaluate's cache key.
    """
    from pipeline.core.contracts import serving_dir

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
    from pipeline.core import files
    from pipeline.core.contracts import serving_dir
    from pipeline.core.contracts.model import VARIANT_DIRS

    path = model.path(VARIANT_DIRS[variant])
    if not files.exists(files.join(path, "saved_model.pb")):
        return None
    return serving_dir.saved_model_digest(path)


SPEC = ComponentSpec(
    name="evaluate",
    module="components.evaluate",
    inputs={"model": "Model", "examples": "Examples", "documents": "Documents",
            "tokenizer": "Tokenizer"},
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
    config=("evaluation", "push"),
    optional_inputs=("documents", "tokenizer"),
    resolvers={"baseline": resolve_baseline},
)


def run(inputs, outputs, runtime, evaluation, push):
    """Evaluate the candidate (and baseline) with TFMA; write metrics, samples, report, blessing.

    Args:
        inputs: `model`, `examples`; optional `documents` (eval prompts for samples) and
            `tokenizer` (its fingerprint goes into the lineage); `baseline` (None when
            nothing is in service).
        outputs: `evaluation` and `blessing` directories.
        runtime: the run's `Runtime` (run id, Beam options, logging).
        evaluation: the `EvaluationConfig` section.
        push: the `PushConfig` section: `variant` is the export judged (the one push
            publishes); its serving directory holds the baseline (via the resolver).

    Returns:
        Output properties: the headline metrics and the verdict.
    """
    from components.evaluate import blessing, compression, objective, report, slicing
    from pipeline.core import files
    from pipeline.core.configio import to_dict

    candidate = _saved_model(inputs["model"], push.variant)
    baseline = inputs.get("baseline")
    derived = slicing.features_to_derive(evaluation.slice_features, inputs["examples"].uri)
    kind = objective.of_training(compression.read_training(inputs["model"]))
    metrics, failures, seconds = _run_tfma(inputs, outputs, runtime, evaluation, candidate,
                                           baseline, derived, kind)
    compression.add_to_metrics(metrics, inputs, outputs, runtime, evaluation, push.variant,
                               derived)
    files.write_json(files.join(outputs["evaluation"], METRICS_FILE), metrics)
    samples = _samples(inputs.get("documents"), candidate, outputs, runtime, evaluation)
    verdict = blessing.decide(failures, metrics,
                              slice_gate_min_examples=evaluation.slice_gate_min_examples,
                              baseline=_describe(baseline))
    skipped = objective.skipped_thresholds(evaluation, kind)
    for item in skipped:
        runtime.log(f"[evaluate] {item['setting']} skipped: {item['reason']}")
    verdict.update(blessing.provenance(inputs, candidate, runtime,
                                       ("examples", "documents", "tokenizer"),
                                       to_dict(evaluation)),
                   comparison=metrics["comparison"], slices=metrics["slices"],
                   objective=kind, skipped_thresholds=skipped)
    files.write_json(files.join(outputs["blessing"], BLESSING_FILE), verdict)
    report.write_report(outputs["evaluation"], metrics=metrics, verdict=verdict, samples=samples,
                        evaluation=evaluation)
    headline = {k: metrics["overall"].get(k) for k in HEADLINE}
    shown = ", ".join(f"{k.replace('_', ' ')} {report.fmt(v)}" for k, v in headline.items())
    runtime.log(f"[evaluate] {shown}; blessed: {verdict['blessed']}; TFMA took {seconds:.1f}s")
    return {"evaluation": {**headline, "tfma_seconds": seconds},
            "blessing": {"blessed": verdict["blessed"]}}


def _run_tfma(inputs, outputs, runtime, evaluation, candidate: str, baseline, derived,
              objective: str):
    from components.evaluate import analysis, tfma_config
    from pipeline.core import files
    from pipeline.core.contracts import serving_dir

    eval_config = tfma_config.build_eval_config(evaluation, with_baseline=baseline is not None,
                                                objective=objective)
    tfma_dir = files.join(outputs["evaluation"], "tfma")
    runtime.log(f"[evaluate] TFMA over {inputs['examples'].uri}"
                + (f" against baseline version {baseline.properties.get('version')}" if baseline else ""))
    if baseline is not None and (problem := serving_dir.damage(baseline.uri)):
        raise UsageError(_unloadable(baseline, problem))
    started = time.perf_counter()
    try:
        analysis.run_tfma(eval_config, candidate=candidate,
                          baseline=baseline.uri if baseline else None,
                          examples_dir=inputs["examples"].uri, output_dir=tfma_dir,
                          beam_args=runtime.beam_args, batch_size=evaluation.batch_size,
                          derived=derived, length_buckets=evaluation.length_buckets)
    except Exception:
        # Damage `damage` cannot see (variables cut short) fails deep inside TFMA's Beam
        # workers; say so in one line (a full load costs much, so only after a failure).
        problem = serving_dir.load_problem(baseline.uri) if baseline else None
        if problem is None:
            raise
        raise UsageError(_unloadable(baseline, problem)) from None
    seconds = round(time.perf_counter() - started, 3)
    metrics = _metrics_document(analysis.read_metrics(tfma_dir), baseline, objective)
    metrics["derived_slice_features"] = list(derived)
    return metrics, analysis.read_validation(tfma_dir), seconds


def _unloadable(baseline: Artifact, problem: str) -> str:
    return (f"push.serving_dir: the model in service at {baseline.uri} does not load "
            f"({problem}); move that version out of the serving directory")


def _samples(documents: Artifact | None, candidate: str, outputs, runtime, evaluation) -> dict:
    """samples.json: continuations of eval document beginnings (or why there are none)."""
    from pipeline.core import files
    from components.evaluate import samples

    if documents is None or evaluation.num_samples == 0:
        reason = ("evaluation.num_samples is 0" if documents is not None
                  else "no documents input to take prompts from")
        result = {"skipped": reason, "samples": [], "summary": None}
    else:
        prompts = samples.pick_prompts(documents.uri, evaluation.num_samples,
                                       evaluation.sample_prompt_words)
        result = samples.continue_prompts(candidate, prompts, evaluation) if prompts else {
            "skipped": f"no eval document has more than {evaluation.sample_prompt_words} words",
            "samples": [], "summary": None}
    if "skipped" in result:
        runtime.log(f"[evaluate] no samples: {result['skipped']}")
    files.write_json(files.join(outputs["evaluation"], samples.SAMPLES_FILE), result)
    return result


def _saved_model(model: Artifact, variant: str = "float") -> str:
    from pipeline.core import files
    from pipeline.core.contracts.model import VARIANT_DIRS

    path = model.path(VARIANT_DIRS[variant])
    if not files.exists(files.join(path, "saved_model.pb")):
        raise UsageError(f"{model.uri}: no SavedModel at {VARIANT_DIRS[variant]}/"
                         + (" (push.variant quantized needs train.quantize int8)"
                            if variant == "quantized" else ""))
    return path


def _metrics_document(by_model: dict, baseline: Artifact | None, objective: str) -> dict:
    """metrics.json: the candidate's metrics at the top, the baseline's and the diff beside;
    the metrics the objective does not support are there as null."""
    from components.evaluate import blessing
    from components.evaluate.objective import CAUSAL_ONLY, computes
    from components.evaluate.tfma_config import BASELINE, CANDIDATE

    for document in by_model.values():
        for values in (document.get("overall", {}), *document.get("slices", {}).values()):
            values.update({name: None for name in CAUSAL_ONLY if not computes(name, objective)})
    candidate = by_model.get(CANDIDATE, {})
    overall = candidate.get("overall", {})
    # TFMA reports 0 rather than failing when it is misconfigured: refuse empty results.
    if not overall.get("example_count") or not overall.get("token_count"):
        raise RuntimeError(f"TFMA computed no examples or no target tokens: {overall}")
    base = by_model.get(BASELINE) if baseline else None
    return {"objective": objective, "overall": overall, "slices": candidate.get("slices", {}),
            "baseline": base, "diff": by_model.get("diff") if baseline else None,
            "comparison": blessing.compare(overall, base["overall"], "baseline") if base else None}


def _describe(baseline: Artifact | None) -> dict | None:
    if baseline is None:
        return None
    return {"uri": baseline.uri, "fingerprint": baseline.fingerprint, **baseline.properties}


def summary(outputs: dict) -> dict:
    """Run-level metrics for latest_run.json (None for what was not computed)."""
    from pipeline.core.files import read_artifact_json

    metrics = (read_artifact_json(outputs.get("evaluation"), METRICS_FILE) or {}).get("overall", {})
    verdict = read_artifact_json(outputs.get("blessing"), BLESSING_FILE) or {}
    return {"eval_perplexity": metrics.get("perplexity"),
            "eval_unigram_perplexity": metrics.get("unigram_perplexity"),
            "eval_bits_per_byte": metrics.get("bits_per_byte"),
            "eval_token_accuracy": metrics.get("token_accuracy"),
            "blessed": verdict.get("blessed")}
