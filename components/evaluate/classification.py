"""Classification metrics for TFMA, from one accumulation per slice.

The model spec feeds each example's `label` (its id) and the `classify_examples`
signature's `probabilities` [C]. One accumulation per slice, shared by the metrics
below (TFMA de-duplicates it), holds the confusion matrix of argmax predictions and, per
class, histograms of the class's probability over the examples of that class and over
the others; every metric derives from those:

    accuracy                         trace / total
    macro_precision, macro_recall,   the means over the classes that occur in the slice
    macro_f1                         (as labels or as predictions; scikit-learn's default);
                                     a class never predicted has precision 0
    macro_auc                        the mean one-vs-rest ROC AUC over the classes with
                                     both positives and negatives in the slice
    precision, recall, f1, auc,      per class, under `SubKey(class_id=c)` (metric
    support                          `per_class`)

AUC comes from the histograms (`AUC_BINS` equal bins over [0, 1], ties within a bin
counted half), so it is exact unless a positive and a negative share a bin. TFMA's own
`MultiClassConfusionMatrixPlot` draws the confusion matrix beside these.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import metric_types, metric_util

MODULE = __name__
SUMS_NAME = "_classification_sums"
AUC_BINS = 10_000
OVERALL = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auc")
PER_CLASS = ("precision", "recall", "f1", "auc", "support")


class _Sums:
    """Confusion matrix [C, C] (true, predicted) and score histograms [C, 2, bins]
    (class, negative/positive, bin)."""

    def __init__(self, num_classes: int):
        self.confusion = np.zeros((num_classes, num_classes), np.float64)
        self.histograms = np.zeros((num_classes, 2, AUC_BINS), np.float64)


class _ClassificationCombiner(beam.CombineFn):
    """Accumulates `_Sums` from (label id, probabilities) pairs."""

    def __init__(self, key, eval_config, num_classes: int):
        self._key = key
        self._eval_config = eval_config
        self._num_classes = num_classes

    def create_accumulator(self) -> _Sums:
        return _Sums(self._num_classes)

    def add_input(self, accumulator: _Sums, element) -> _Sums:
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, flatten=False, example_weighted=False):
            add_example(accumulator, int(np.asarray(label).reshape(-1)[0]),
                        np.asarray(prediction, np.float64).reshape(-1))
        return accumulator

    def merge_accumulators(self, accumulators) -> _Sums:
        total = self.create_accumulator()
        for accumulator in accumulators:
            total.confusion += accumulator.confusion
            total.histograms += accumulator.histograms
        return total

    def extract_output(self, accumulator: _Sums) -> dict:
        return {self._key: accumulator}


def add_example(sums: _Sums, label: int, probabilities: np.ndarray) -> None:
    """Count one example into `sums`.

    Raises:
        ValueError: the label is not a class id, or the probabilities are not C values.
    """
    classes = sums.confusion.shape[0]
    if not 0 <= label < classes or probabilities.shape != (classes,):
        raise ValueError(f"classification metrics need a label in [0, {classes}) and "
                         f"{classes} probabilities, got label {label} and "
                         f"{probabilities.shape[0]} values")
    sums.confusion[label, int(np.argmax(probabilities))] += 1
    bins = np.clip((probabilities * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)
    positive = np.arange(classes) == label
    sums.histograms[np.arange(classes), positive.astype(np.int64), bins] += 1


def per_class(confusion: np.ndarray) -> dict:
    """Per class precision, recall, F1 and support (numpy arrays) from a confusion matrix."""
    true_positive = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive),
                          where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual,
            "present": (actual + predicted) > 0}


def histogram_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC from score histograms: P(positive > negative) + P(tie) / 2 (NaN when a
    side is empty)."""
    total = positives.sum() * negatives.sum()
    if not total:
        return float("nan")
    below = np.cumsum(negatives) - negatives
    return float((positives * (below + 0.5 * negatives)).sum() / total)


def summarize(sums: _Sums) -> dict:
    """Every metric of a slice: the `OVERALL` names, and per class lists under `PER_CLASS`."""
    confusion = sums.confusion
    classes = per_class(confusion)
    aucs = np.array([histogram_auc(h[0], h[1]) for h in sums.histograms])
    present = classes["present"]
    total = confusion.sum()
    defined = ~np.isnan(aucs)
    return {
        "accuracy": float(np.trace(confusion) / total) if total else float("nan"),
        "macro_precision": _mean(classes["precision"][present]),
        "macro_recall": _mean(classes["recall"][present]),
        "macro_f1": _mean(classes["f1"][present]),
        "macro_auc": _mean(aucs[defined]),
        "precision": classes["precision"].tolist(), "recall": classes["recall"].tolist(),
        "f1": classes["f1"].tolist(), "auc": aucs.tolist(),
        "support": classes["support"].tolist(),
    }


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _sums_computation(eval_config, model_name: str, output_name: str,
                      num_classes: int) -> metric_types.MetricComputation:
    key = metric_types.MetricKey(name=SUMS_NAME, model_name=model_name, output_name=output_name)
    preprocessor = metric_types.StandardMetricInputsPreprocessor(
        include_filter={constants.LABELS_KEY: {}, constants.PREDICTIONS_KEY: {}},
        include_default_inputs=False)
    return metric_types.MetricComputation(
        keys=[key], preprocessors=[preprocessor],
        combiner=_ClassificationCombiner(key, eval_config, num_classes))


class _ClassificationMetric(metric_types.Metric):
    """Metrics derived from the shared sums; subclasses set NAME (an `OVERALL` name, or
    `per_class` for the `PER_CLASS` metrics of every class).

    Args:
        num_classes: the label vocabulary's size.
        name: the metric's name (default NAME).
    """

    NAME = ""

    def __init__(self, num_classes: int, name: str | None = None):
        super().__init__(self._computations, num_classes=num_classes, name=name or self.NAME)

    def _computations(self, num_classes: int, name: str, eval_config=None, model_names=None,
                      output_names=None):
        computations = []
        for model_name in model_names or [""]:
            for output_name in output_names or [""]:
                sums = _sums_computation(eval_config, model_name, output_name, num_classes)
                keys = self._keys(name, model_name, output_name, num_classes)

                def result(metrics, sums_key=sums.keys[0], keys=keys) -> dict:
                    values = summarize(metrics[sums_key])
                    return {key: (values[metric] if c is None else values[metric][c])
                            for (metric, c), key in keys.items()}

                computations.append(sums)
                computations.append(metric_types.DerivedMetricComputation(
                    keys=list(keys.values()), result=result))
        return computations

    def _keys(self, name: str, model_name: str, output_name: str, num_classes: int) -> dict:
        """(metric, class id or None) -> its key."""
        if self.NAME != PER_CLASS_NAME:
            return {(self.NAME, None): metric_types.MetricKey(
                name=name, model_name=model_name, output_name=output_name)}
        return {(metric, c): metric_types.MetricKey(
            name=metric, model_name=model_name, output_name=output_name,
            sub_key=metric_types.SubKey(class_id=c))
            for metric in PER_CLASS for c in range(num_classes)}

    @property
    def compute_confidence_interval(self) -> bool:
        return False


PER_CLASS_NAME = "per_class"


class Accuracy(_ClassificationMetric):
    NAME = "accuracy"


class MacroPrecision(_ClassificationMetric):
    NAME = "macro_precision"


class MacroRecall(_ClassificationMetric):
    NAME = "macro_recall"


class MacroF1(_ClassificationMetric):
    NAME = "macro_f1"


class MacroAUC(_ClassificationMetric):
    NAME = "macro_auc"


class PerClass(_ClassificationMetric):
    NAME = PER_CLASS_NAME


# Metric name in results -> class name (all in this module), in report order.
CLASSIFICATION_METRICS = {cls.NAME: cls.__name__ for cls in
                          (Accuracy, MacroPrecision, MacroRecall, MacroF1, MacroAUC, PerClass)}
