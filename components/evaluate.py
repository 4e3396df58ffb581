"""evaluate (TFX Evaluator): model + eval TFRecords (+ model in service) -> metrics, blessing.

TFMA runs the candidate's `score_examples` signature over the eval split, with the model in
service (the latest pushed version that is not this very model) as its baseline, and
computes the LM metrics of `components.evaluation.metrics` overall and per slice. The
thresholds of the `evaluation` config section decide the blessing.

Outputs:
    evaluation/metrics.json   {"overall": {...}, "slices": {"domain=x": {...}},
                               "baseline": {...} | null, "diff": {...} | null}
    evaluation/tfma/          TFMA's own results (tfma.load_metrics and friends read them)
    blessing/blessing.json    {"blessed", "failures": [{"metric", "slice", "kind",
                               "threshold", "value"}], "baseline", "metrics"}
"""

from __future__ import annotations

import hashlib
import json
import os

from pipeline.artifacts import Artifact, write_json_atomic
from pipeline.component import ComponentSpec
from pipeline.errors import UsageError

METRICS_FILE = "metrics.json"
BLESSING_FILE = "blessing.json"


def resolve_baseline(config, inputs: dict) -> Artifact | None:
    """The model in service to compare with: the newest pushed version that is not the candidate.

    Its fingerprint covers the version and the pushed model's fingerprint, so a new push
    changes evaluate's cache key.
    """
    from components.evaluation import serving_dir

    candidate = inputs.get("model")
    version = serving_dir.baseline_for(config.push.serving_dir,
                                       candidate.fingerprint if candidate else None)
    if version is None:
        return None
    identity = f"{os.path.abspath(version.path)}|{version.model_fingerprint}"
    return Artifact(type="Model", uri=os.path.abspath(version.path),
                    fingerprint=hashlib.sha256(identity.encode()).hexdigest(),
                    properties={"version": version.number,
                                "model_fingerprint": version.model_fingerprint})


SPEC = ComponentSpec(
    name="evaluate",
    module="components.evaluate",
    inputs={"model": "Model", "examples": "Examples"},
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
    config=("evaluation", "push"),
    resolvers={"baseline": resolve_baseline},
)


def run(inputs, outputs, runtime, evaluation, push):
    """Evaluate the candidate (and baseline) with TFMA and write metrics and blessing.

    Args:
        inputs: `model`, `examples`, and `baseline` (None when nothing is in service).
        outputs: `evaluation` and `blessing` directories.
        runtime: the run's `Runtime` (Beam options, logging).
        evaluation: the `EvaluationConfig` section.
        push: the `PushConfig` section (only its serving directory, via the resolver).

    Returns:
        Output properties: the headline metrics and the verdict.
    """
    from components.evaluation import analysis, blessing, tfma_config

    candidate = _saved_model(inputs["model"])
    baseline = inputs.get("baseline")
    eval_config = tfma_config.build_eval_config(evaluation, with_baseline=baseline is not None)
    tfma_dir = os.path.join(outputs["evaluation"], "tfma")
    runtime.log(f"[evaluate] TFMA over {inputs['examples'].uri}"
                + (f" against baseline version {baseline.properties.get('version')}" if baseline else ""))
    analysis.run_tfma(eval_config, candidate=candidate, baseline=baseline.uri if baseline else None,
                      examples_dir=inputs["examples"].uri, output_dir=tfma_dir,
                      beam_args=runtime.beam_args, batch_size=evaluation.batch_size)
    by_model = analysis.read_metrics(tfma_dir)
    metrics = _metrics_document(by_model, baseline)
    verdict = blessing.decide(analysis.read_validation(tfma_dir), metrics,
                              slice_gate_min_examples=evaluation.slice_gate_min_examples,
                              baseline=_describe(baseline))
    write_json_atomic(os.path.join(outputs["evaluation"], METRICS_FILE), metrics)
    write_json_atomic(os.path.join(outputs["blessing"], BLESSING_FILE), verdict)
    headline = {k: metrics["overall"].get(k) for k in ("perplexity", "bits_per_byte", "token_accuracy")}
    runtime.log(f"[evaluate] {headline}; blessed: {verdict['blessed']}")
    return {"evaluation": headline, "blessing": {"blessed": verdict["blessed"]}}


def _saved_model(model: Artifact) -> str:
    path = model.path("saved_model")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UsageError(f"{model.uri}: no SavedModel at saved_model/")
    return path


def _metrics_document(by_model: dict, baseline: Artifact | None) -> dict:
    """metrics.json: the candidate's metrics at the top, the baseline's and the diff beside."""
    from components.evaluation.tfma_config import BASELINE, CANDIDATE

    candidate = by_model.get(CANDIDATE, {})
    overall = candidate.get("overall", {})
    # TFMA reports 0 rather than failing when it is misconfigured: refuse empty results.
    if not overall.get("example_count") or not overall.get("token_count"):
        raise RuntimeError(f"TFMA computed no examples or no target tokens: {overall}")
    return {"overall": overall, "slices": candidate.get("slices", {}),
            "baseline": by_model.get(BASELINE) if baseline else None,
            "diff": by_model.get("diff") if baseline else None}


def _describe(baseline: Artifact | None) -> dict | None:
    if baseline is None:
        return None
    return {"uri": baseline.uri, **baseline.properties}


def _read_json(artifact: Artifact | None, name: str) -> dict | None:
    if artifact is None:
        return None
    try:
        with open(artifact.path(name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def summary(outputs: dict) -> dict:
    """Run-level metrics for latest_run.json (None for what was not computed)."""
    metrics = (_read_json(outputs.get("evaluation"), METRICS_FILE) or {}).get("overall", {})
    verdict = _read_json(outputs.get("blessing"), BLESSING_FILE) or {}
    return {"eval_perplexity": metrics.get("perplexity"),
            "eval_bits_per_byte": metrics.get("bits_per_byte"),
            "eval_token_accuracy": metrics.get("token_accuracy"),
            "blessed": verdict.get("blessed")}


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
