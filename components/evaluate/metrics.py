"""Language-model metrics for TFMA (which has no perplexity).

Every metric here derives from one shared accumulation, `_lm_sums`, over the per-example
outputs of the model's `score_examples` signature (`nll`, `num_tokens`, `num_correct`,
`num_bytes`). TFMA de-duplicates identical computations, so the sums are computed once per
slice however many of these metrics are configured. Ratios are taken of sums (token- or
byte-weighted), never averaged per example.

`UnigramPerplexity` is the floor for a model that ignores context: the perplexity of the
slice's target tokens under their own frequencies (the best unigram model for exactly
these tokens). It reads the examples' `token_ids` and `segment_ids`, not the model, so a
model that learned anything beyond token frequencies scores below it.
"""

from __future__ import annotations

import math
from typing import Callable

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import metric_types

MODULE = __name__
SUMS_NAME = "_lm_sums"
# Order of the accumulator's fields.
_EXAMPLES, _TOKENS, _NLL, _CORRECT, _BYTES = range(5)
_OUTPUTS = ("num_tokens", "nll", "num_correct", "num_bytes")


class _LmSumsCombiner(beam.CombineFn):
    """Sums examples, tokens, NLL (nats), correct next tokens and bytes."""

    def __init__(self, key: metric_types.MetricKey):
        self._key = key

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(5, dtype=np.float64)

    def add_input(self, accumulator: np.ndarray, element) -> np.ndarray:
        outputs = _model_outputs(element.predictions, self._key.model_name)
        accumulator[_EXAMPLES] += 1
        for index, name in zip((_TOKENS, _NLL, _CORRECT, _BYTES), _OUTPUTS):
            accumulator[index] += float(np.sum(outputs[name]))
        return accumulator

    def merge_accumulators(self, accumulators) -> np.ndarray:
        total = self.create_accumulator()
        for accumulator in accumulators:
            total += accumulator
        return total

    def extract_output(self, accumulator: np.ndarray) -> dict:
        return {self._key: accumulator}


def _model_outputs(predictions, model_name: str) -> dict:
    """The signature outputs of `model_name` (TFMA nests them by model only with several)."""
    if not isinstance(predictions, dict):
        raise ValueError("LM metrics need the model's dict of outputs as predictions, "
                         f"got {type(predictions).__name__}")
    if model_name and model_name in predictions and isinstance(predictions[model_name], dict):
        predictions = predictions[model_name]
    missing = [name for name in _OUTPUTS if name not in predictions]
    if missing:
        raise ValueError(f"model outputs lack {missing} (have {sorted(predictions)}): "
                         "the model spec must use the `score_examples` signature")
    return predictions


def _sums_computation(model_name: str, output_name: str) -> metric_types.MetricComputation:
    key = metric_types.MetricKey(name=SUMS_NAME, model_name=model_name, output_name=output_name)
    preprocessor = metric_types.StandardMetricInputsPreprocessor(
        include_filter={constants.PREDICTIONS_KEY: {}}, include_default_inputs=False)
    return metric_types.MetricComputation(keys=[key], preprocessors=[preprocessor],
                                          combiner=_LmSumsCombiner(key))


def _ratio_computations(name: str, formula: Callable[[np.ndarray], float],
                        model_names=None, output_names=None) -> metric_types.MetricComputations:
    """Computations of metric `name` = formula(sums), for every model and output."""
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            sums = _sums_computation(model_name, output_name)
            key = metric_types.MetricKey(name=name, model_name=model_name,
                                         output_name=output_name)

            def result(metrics, key=key, sums_key=sums.keys[0]) -> dict:
                return {key: formula(metrics[sums_key])}

            computations.append(sums)
            computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations


def _safe_div(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def mean_nll(sums: np.ndarray) -> float:
    """Token-weighted mean negative log-likelihood, in nats per token."""
    return _safe_div(sums[_NLL], sums[_TOKENS])


def perplexity(sums: np.ndarray) -> float:
    """exp(mean NLL)."""
    value = mean_nll(sums)
    return math.exp(value) if math.isfinite(value) else float("nan")


def bits_per_byte(sums: np.ndarray) -> float:
    """Total NLL in bits over total UTF-8 bytes: comparable across tokenizers."""
    return _safe_div(sums[_NLL] / math.log(2), sums[_BYTES])


def token_accuracy(sums: np.ndarray) -> float:
    """Fraction of target tokens that are the model's top prediction."""
    return _safe_div(sums[_CORRECT], sums[_TOKENS])


def token_count(sums: np.ndarray) -> float:
    """Number of predicted (target) tokens."""
    return float(sums[_TOKENS])


class _LmMetric(metric_types.Metric):
    """A metric computed from the shared LM sums; subclasses set NAME and FORMULA."""

    NAME: str = ""
    FORMULA: Callable[[np.ndarray], float]

    def __init__(self, name: str | None = None):
        super().__init__(self._computations, name=name or self.NAME)

    def _computations(self, name: str, model_names=None, output_names=None):
        return _ratio_computations(name, type(self).FORMULA, model_names, output_names)

    @property
    def compute_confidence_interval(self) -> bool:
        return False


class MeanTokenNLL(_LmMetric):
    NAME = "mean_nll"
    FORMULA = staticmethod(mean_nll)


class Perplexity(_LmMetric):
    NAME = "perplexity"
    FORMULA = staticmethod(perplexity)


class BitsPerByte(_LmMetric):
    NAME = "bits_per_byte"
    FORMULA = staticmethod(bits_per_byte)


class TokenAccuracy(_LmMetric):
    NAME = "token_accuracy"
    FORMULA = staticmethod(token_accuracy)


class TokenCount(_LmMetric):
    NAME = "token_count"
    FORMULA = staticmethod(token_count)


class _UnigramCombiner(beam.CombineFn):
    """Counts each target token id (targets as in training: the next token of a document)."""

    def __init__(self, key: metric_types.MetricKey):
        self._key = key

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, accumulator: dict, element) -> dict:
        features = element.features
        tokens = np.asarray(features["token_ids"]).reshape(-1)
        segments = np.asarray(features["segment_ids"]).reshape(-1)
        is_target = (segments[1:] == segments[:-1]) & (segments[1:] != 0)
        ids, counts = np.unique(tokens[1:][is_target], return_counts=True)
        for token, count in zip(ids.tolist(), counts.tolist()):
            accumulator[token] = accumulator.get(token, 0) + count
        return accumulator

    def merge_accumulators(self, accumulators) -> dict:
        total: dict = {}
        for accumulator in accumulators:
            for token, count in accumulator.items():
                total[token] = total.get(token, 0) + count
        return total

    def extract_output(self, accumulator: dict) -> dict:
        return {self._key: unigram_perplexity(np.array(list(accumulator.values()), np.float64))}


def unigram_perplexity(counts: np.ndarray) -> float:
    """exp of the entropy (nats) of the distribution the token counts define."""
    total = counts.sum()
    if not total:
        return float("nan")
    probabilities = counts / total
    return math.exp(-float(np.sum(probabilities * np.log(probabilities))))


class UnigramPerplexity(metric_types.Metric):
    """Perplexity of the slice's targets under their own unigram frequencies."""

    NAME = "unigram_perplexity"

    def __init__(self, name: str | None = None):
        super().__init__(self._computations, name=name or self.NAME)

    @staticmethod
    def _computations(name: str, model_names=None, output_names=None):
        preprocessor = metric_types.StandardMetricInputsPreprocessor(
            include_filter={constants.FEATURES_KEY: {"token_ids": {}, "segment_ids": {}}},
            include_default_inputs=False)
        computations = []
        for model_name in model_names or [""]:
            for output_name in output_names or [""]:
                key = metric_types.MetricKey(name=name, model_name=model_name,
                                             output_name=output_name)
                computations.append(metric_types.MetricComputation(
                    keys=[key], preprocessors=[preprocessor], combiner=_UnigramCombiner(key)))
        return computations

    @property
    def compute_confidence_interval(self) -> bool:
        return False


# Metric name in results -> TFMA class name (all in this module), in report order.
LM_METRICS = {cls.NAME: cls.__name__ for cls in
              (MeanTokenNLL, Perplexity, BitsPerByte, TokenAccuracy, TokenCount,
               UnigramPerplexity)}
# Whether a lower value is better, for change thresholds.
LOWER_IS_BETTER = {"mean_nll": True, "perplexity": True, "bits_per_byte": True,
                   "token_accuracy": False}
