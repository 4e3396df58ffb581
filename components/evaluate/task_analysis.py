"""TFMA for the fine-tuning tasks: the eval config from `task` and `evaluation`, and the results.

The candidate runs as a generic SavedModel through its task signature
(`classify_examples` -> `probabilities` against the examples' `label`;
`generate_examples` -> the greedy `prediction` against `target_text`), sliced overall
and by each of `evaluation.slice_features` the examples carry. The gate is a set of value
thresholds on the overall slice (`task.min_*`).
"""

from __future__ import annotations

import json

from google.protobuf import wrappers_pb2
from tensorflow_model_analysis.proto import config_pb2

from components.evaluate import classification, text_metrics
from components.evaluate.analysis import plain, slice_features
from components.evaluate.tfma_config import CANDIDATE, MODEL_TYPE, slice_name

# task.type -> (signature, label key, prediction key).
MODEL_INPUTS = {"classification": ("classify_examples", "label", "probabilities"),
                "text_to_text": ("generate_examples", "target_text", "prediction")}
# task config key -> the metric it bounds from below.
GATES = {"min_accuracy": "accuracy", "min_macro_f1": "macro_f1", "min_macro_auc": "macro_auc",
         "min_bleu": "bleu", "min_rouge_l": "rouge_l", "min_exact_match": "exact_match"}
CONFUSION_PLOT = "multi_class_confusion_matrix_plot"


def headline(task_type: str) -> tuple[str, ...]:
    """The overall metrics a task reports first."""
    if task_type == "classification":
        return classification.OVERALL
    return tuple(text_metrics.TEXT_METRICS)


def build_eval_config(task, evaluation, slice_features: list[str],
                      num_classes: int | None) -> config_pb2.EvalConfig:
    """The TFMA config of a task's evaluation.

    Args:
        task: the `TaskConfig` (type, gate).
        evaluation: the `EvaluationConfig` (min slice size).
        slice_features: the one-value features to slice by.
        num_classes: the label vocabulary's size (classification).

    Returns:
        The `tfma.EvalConfig`.
    """
    signature, label_key, prediction_key = MODEL_INPUTS[task.type]
    model_spec = config_pb2.ModelSpec(name=CANDIDATE, signature_name=signature,
                                      model_type=MODEL_TYPE, label_key=label_key,
                                      prediction_key=prediction_key)
    slicing = [config_pb2.SlicingSpec()]
    slicing += [config_pb2.SlicingSpec(feature_keys=[name]) for name in slice_features]
    return config_pb2.EvalConfig(
        model_specs=[model_spec], slicing_specs=slicing,
        metrics_specs=[config_pb2.MetricsSpec(metrics=_metrics(task, num_classes))],
        options=config_pb2.Options(
            min_slice_size=wrappers_pb2.Int32Value(value=evaluation.min_slice_size),
            include_default_metrics=wrappers_pb2.BoolValue(value=False),
            compute_confidence_intervals=wrappers_pb2.BoolValue(value=False)))


def _metrics(task, num_classes: int | None) -> list[config_pb2.MetricConfig]:
    configs = [config_pb2.MetricConfig(class_name="ExampleCount")]
    if task.type == "classification":
        table, module, arguments = (classification.CLASSIFICATION_METRICS, classification.MODULE,
                                    {"num_classes": num_classes})
    else:
        table, module, arguments = text_metrics.TEXT_METRICS, text_metrics.MODULE, {}
    bounds = {metric: getattr(task, key) for key, metric in GATES.items()
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


def read_metrics(output_dir: str, labels: list[str]) -> dict:
    """TFMA's metrics as {"overall": {...}, "classes": {label: {...}}, "slices": {name: {...}}};
    a classifier's slices also hold their own "classes".

    Args:
        output_dir: TFMA's output directory.
        labels: the label vocabulary (class id -> name), or [] for text to text.
    """
    import tensorflow_model_analysis as tfma

    result: dict = {"overall": {}, "classes": {}, "slices": {}}
    for record in tfma.load_metrics(output_dir):
        name = slice_name(slice_features(record.slice_key))
        if name == "overall":
            values, classes = result["overall"], result["classes"]
        else:
            values = result["slices"].setdefault(name, {})
            classes = values.setdefault("classes", {}) if labels else {}
        for item in record.metric_keys_and_values:
            if item.key.name.startswith("_"):
                continue
            sub_key = item.key.sub_key
            if sub_key.HasField("class_id"):
                classes.setdefault(labels[sub_key.class_id.value], {})[item.key.name] = \
                    plain(item.value)
            else:
                values[item.key.name] = plain(item.value)
    return result


def read_confusion(output_dir: str, num_classes: int) -> dict:
    """The overall confusion matrix of TFMA's `MultiClassConfusionMatrixPlot`:
    {"matrix": [[count]] (rows: true class, columns: predicted class), "source"}."""
    import tensorflow_model_analysis as tfma

    matrix = [[0.0] * num_classes for _ in range(num_classes)]
    for record in tfma.load_plots(output_dir):
        if slice_features(record.slice_key):
            continue
        for item in record.plot_keys_and_values:
            if item.key.name != CONFUSION_PLOT:
                continue
            plot = item.value.multi_class_confusion_matrix_at_thresholds
            for entry in plot.matrices[0].entries:
                matrix[entry.actual_class_id][entry.predicted_class_id] = \
                    entry.num_weighted_examples
    return {"matrix": matrix, "source": f"TFMA {CONFUSION_PLOT}, threshold 0 (argmax)"}
