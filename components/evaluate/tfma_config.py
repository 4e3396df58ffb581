"""The `tfma.EvalConfig` of an evaluation, built from the `evaluation` and `task` sections.

The candidate (and the baseline, when a model is in service) run as generic SavedModels
through a signature of their export: TFMA 0.52 cannot load a Keras 3 model as Keras, and
naming the model type stops it from trying (DESIGN.md section 6). A language model runs
`score_examples` (the metrics of `metrics.py`, its gate in the `evaluation` section); a
fine-tuning task its own signature against the examples' label feature:

    classification  `classify_examples` -> `probabilities` against `label`
                    (`classification.py`, and TFMA's confusion matrix plot)
    text_to_text    `generate_examples` -> the greedy `prediction` against `target_text`
                    (`text_metrics.py`)

with value thresholds on the overall slice as its gate (`task.min_*`). Every task type is
sliced overall and by each of `evaluation.slice_features`.
"""

from __future__ import annotations

import json

from tensorflow_model_analysis.proto import config_pb2
from google.protobuf import wrappers_pb2

from components.evaluate import classification, metrics as lm_metrics, text_metrics
from components.evaluate.objective import CAUSAL, computes

CANDIDATE = "candidate"
BASELINE = "baseline"
SIGNATURE = "score_examples"
MODEL_TYPE = "tf_generic"
# task.type -> (signature, label key, prediction key) of a fine-tuning task.
TASK_MODEL_INPUTS = {"classification": ("classify_examples", "label", "probabilities"),
                     "text_to_text": ("generate_examples", "target_text", "prediction")}
# task config key -> the metric it bounds from below.
TASK_GATES = {"min_accuracy": "accuracy", "min_macro_f1": "macro_f1",
              "min_macro_auc": "macro_auc", "min_bleu": "bleu", "min_rouge_l": "rouge_l",
              "min_exact_match": "exact_match"}


def slice_name(feature_keys: dict) -> str:
    """The name of a slice in metrics.json: `overall` or `domain=math` (`a=x,b=y`)."""
    if not feature_keys:
        return "overall"
    return ",".join(f"{key}={value}" for key, value in feature_keys.items())


def build_eval_config(evaluation, *, with_baseline: bool,
                      objective: str = CAUSAL) -> config_pb2.EvalConfig:
    """The TFMA config for one evaluation.

    Args:
        evaluation: the `EvaluationConfig` section.
        with_baseline: also evaluate the model in service, as TFMA's baseline.
        objective: the candidate's (`components.evaluate.objective`): a masked LM gets
            no bits per byte, nor its thresholds.

    Returns:
        The `tfma.EvalConfig`.
    """
    model_specs = [_model_spec(CANDIDATE, is_baseline=False)]
    if with_baseline:
        model_specs.append(_model_spec(BASELINE, is_baseline=True))
    return _eval_config(model_specs, _metrics_spec(evaluation, with_baseline, objective),
                        evaluation)


def build_task_eval_config(task, evaluation, num_classes: int | None) -> config_pb2.EvalConfig:
    """The TFMA config of a fine-tuning task's evaluation (no baseline).

    Args:
        task: the `TaskConfig` section (type, gate).
        evaluation: the `EvaluationConfig` section (slices, min slice size).
        num_classes: the label vocabulary's size (classification).

    Returns:
        The `tfma.EvalConfig`.
    """
    signature, label_key, prediction_key = TASK_MODEL_INPUTS[task.type]
    model_spec = config_pb2.ModelSpec(name=CANDIDATE, signature_name=signature,
                                      model_type=MODEL_TYPE, label_key=label_key,
                                      prediction_key=prediction_key)
    metrics_spec = config_pb2.MetricsSpec(metrics=_task_metrics(task, num_classes))
    return _eval_config([model_spec], metrics_spec, evaluation)


def _eval_config(model_specs: list, metrics_spec: config_pb2.MetricsSpec,
                 evaluation) -> config_pb2.EvalConfig:
    """Overall and by each of `evaluation.slice_features`; no metric TFMA adds by itself."""
    slicing_specs = [config_pb2.SlicingSpec()]
    slicing_specs += [config_pb2.SlicingSpec(feature_keys=[key]) for key in evaluation.slice_features]
    return config_pb2.EvalConfig(
        model_specs=model_specs,
        slicing_specs=slicing_specs,
        metrics_specs=[metrics_spec],
        options=config_pb2.Options(
            min_slice_size=wrappers_pb2.Int32Value(value=evaluation.min_slice_size),
            include_default_metrics=wrappers_pb2.BoolValue(value=False),
            compute_confidence_intervals=wrappers_pb2.BoolValue(value=False),
        ),
    )


def _model_spec(name: str, *, is_baseline: bool) -> config_pb2.ModelSpec:
    return config_pb2.ModelSpec(name=name, signature_name=SIGNATURE, model_type=MODEL_TYPE,
                                is_baseline=is_baseline)


def _metrics_spec(evaluation, with_baseline: bool, objective: str) -> config_pb2.MetricsSpec:
    configs = [config_pb2.MetricConfig(class_name="ExampleCount")]
    for name, class_name in lm_metrics.LM_METRICS.items():
        if not computes(name, objective):
            continue
        configs.append(config_pb2.MetricConfig(
            class_name=class_name, module=lm_metrics.MODULE, config=json.dumps({"name": name}),
            per_slice_thresholds=_gate(evaluation, name, with_baseline)))
    # No model_names: TFMA then computes every metric for the baseline too, which a
    # change threshold needs.
    return config_pb2.MetricsSpec(metrics=configs)


def _gate(evaluation, name: str, with_baseline: bool) -> list[config_pb2.PerSliceMetricThreshold]:
    """The release gate of metric `name`, as TFMA thresholds on the slices they cover.

    A value threshold bounds the overall slice. Change thresholds (relative, against the
    baseline) exist only when there is a baseline: overall, and optionally on each slice of
    the configured slice features.
    """
    overall = [config_pb2.SlicingSpec()]
    by_feature = [config_pb2.SlicingSpec(feature_keys=[key]) for key in evaluation.slice_features]
    gate = []
    if name == "perplexity" and evaluation.max_perplexity is not None:
        threshold = config_pb2.MetricThreshold()
        threshold.value_threshold.upper_bound.value = evaluation.max_perplexity
        gate.append(config_pb2.PerSliceMetricThreshold(slicing_specs=overall, threshold=threshold))
    if name == "bits_per_byte" and with_baseline:
        for slices, limit in ((overall, evaluation.max_bits_per_byte_increase),
                              (by_feature, evaluation.max_slice_bits_per_byte_increase)):
            if limit is not None and slices:
                gate.append(config_pb2.PerSliceMetricThreshold(
                    slicing_specs=slices, threshold=_worsening_limit(limit)))
    return gate


def _worsening_limit(relative: float) -> config_pb2.MetricThreshold:
    """Lower is better, and (candidate - baseline) / baseline may not exceed `relative`."""
    threshold = config_pb2.MetricThreshold()
    threshold.change_threshold.direction = config_pb2.MetricDirection.LOWER_IS_BETTER
    threshold.change_threshold.relative.value = relative
    return threshold


def _task_metrics(task, num_classes: int | None) -> list[config_pb2.MetricConfig]:
    configs = [config_pb2.MetricConfig(class_name="ExampleCount")]
    if task.type == "classification":
        table, module, arguments = (classification.CLASSIFICATION_METRICS, classification.MODULE,
                                    {"num_classes": num_classes})
    else:
        table, module, arguments = text_metrics.TEXT_METRICS, text_metrics.MODULE, {}
    bounds = {metric: getattr(task, key) for key, metric in TASK_GATES.items()
              if getattr(task, key) is not None}
    for name, class_name in table.items():
        configs.append(config_pb2.MetricConfig(
            class_name=class_name, module=module, config=json.dumps(arguments),
            per_slice_thresholds=_lower_bound(bounds.get(name))))
    if task.type == "classification":
        configs.append(config_pb2.MetricConfig(class_name="MultiClassConfusionMatrixPlot"))
    return configs


def _lower_bound(bound: float | None) -> list[config_pb2.PerSliceMetricThreshold]:
    if bound is None:
        return []
    threshold = config_pb2.MetricThreshold()
    threshold.value_threshold.lower_bound.value = bound
    return [config_pb2.PerSliceMetricThreshold(slicing_specs=[config_pb2.SlicingSpec()],
                                               threshold=threshold)]
