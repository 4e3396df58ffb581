"""Text-to-text metrics for TFMA: corpus BLEU, ROUGE-L and exact match of completions.

The model spec feeds each example's `target_text` (the reference) and the
`generate_examples` signature's greedy `prediction`. The accumulations are TFMA's own
combiners (`tfma.metrics.Bleu`: sacrebleu's corpus BLEU, 13a tokenization, exponential
smoothing; `tfma.metrics.Rouge`: `rouge_score`'s ROUGE-L; `tfma.metrics.ExactMatch`),
fed through a thin adapter because, as shipped, they do not take one string per
example from a TensorFlow model: the strings arrive as bytes, which BLEU iterates as
integers, and BLEU wants its references as [reference streams][examples]. The adapter
decodes both texts (UTF-8) and strips surrounding whitespace, and each score is also
reported as a plain float (`bleu` 0-100, `rouge_l` the mean F1, `exact_match` a rate),
which is what TFMA's writer and thresholds need.
"""

from __future__ import annotations

import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import bleu, exact_match, metric_types, metric_util, rouge

MODULE = __name__


def texts(element, eval_config, model_name: str, output_name: str) -> tuple[str, str]:
    """(reference, prediction) of one example, decoded and stripped."""
    label, prediction, _ = next(metric_util.to_label_prediction_example_weight(
        element, eval_config=eval_config, model_name=model_name, output_name=output_name,
        example_weighted=False, flatten=False))
    return _text(label), _text(prediction)


def _text(value) -> str:
    item = np.asarray(value, dtype=object).reshape(-1)[0]
    return (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)).strip()


class _BleuCombiner(bleu._BleuCombiner):  # noqa: SLF001 - TFMA's corpus-BLEU accumulation
    def add_input(self, accumulator, element):
        reference, prediction = texts(element, self.eval_config, self.model_name,
                                      self.output_name)
        stats = self._extract_corpus_statistics([prediction], [[reference]])
        return self.merge_accumulators([accumulator, *stats])


class _RougeCombiner(rouge.RougeCombiner):
    def add_input(self, accumulator, element):
        reference, prediction = texts(element, self.eval_config, self.model_name,
                                      self.output_name)
        score = self.scorer.score(reference, prediction)[self.rouge_type]
        accumulator.weighted_count += 1.0
        accumulator.total_precision += score.precision
        accumulator.total_recall += score.recall
        accumulator.total_fmeasure += score.fmeasure
        return accumulator


class _ExactMatchCombiner(exact_match._ExactMatchCombiner):  # noqa: SLF001
    def add_input(self, accumulator, element):
        reference, prediction = texts(element, self._eval_config, self._key.model_name,
                                      self._key.output_name)
        accumulator.total_weighted_exact_match_scores += float(reference == prediction)
        accumulator.total_weighted_examples += 1.0
        return accumulator


def _combiner(kind: str, key, eval_config, model_name: str, output_name: str):
    if kind == "bleu":
        return _BleuCombiner(eval_config=eval_config, model_name=model_name,
                             output_name=output_name, key=key, lowercase=False, force=False,
                             tokenize="13a", smooth_method="exp", smooth_value=None,
                             effective_order=False)
    if kind == "rouge_l":
        return _RougeCombiner(rouge_type="rougeL", key=key, eval_config=eval_config,
                              model_name=model_name, output_name=output_name,
                              use_stemmer=False, split_summaries=False, tokenizer=None)
    return _ExactMatchCombiner(key, eval_config, None, None, False, None)


def _as_float(kind: str, value) -> float:
    if kind == "bleu":
        return float(value.score)
    if kind == "rouge_l":
        return float(value.fmeasure)
    return float(value)


class _TextMetric(metric_types.Metric):
    """A text metric of kind `KIND` (`bleu`, `rouge_l`, `exact_match`), as a float."""

    KIND = ""

    def __init__(self, name: str | None = None):
        super().__init__(self._computations, name=name or self.KIND)

    def _computations(self, name: str, eval_config=None, model_names=None, output_names=None):
        kind = self.KIND
        preprocessor = metric_types.StandardMetricInputsPreprocessor(
            include_filter={constants.LABELS_KEY: {}, constants.PREDICTIONS_KEY: {}},
            include_default_inputs=False)
        computations = []
        for model_name in model_names or [""]:
            for output_name in output_names or [""]:
                raw = metric_types.MetricKey(name=f"_{name}_score", model_name=model_name,
                                             output_name=output_name)
                key = metric_types.MetricKey(name=name, model_name=model_name,
                                             output_name=output_name)

                def result(metrics, raw=raw, key=key) -> dict:
                    return {key: _as_float(kind, metrics[raw])}

                computations.append(metric_types.MetricComputation(
                    keys=[raw], preprocessors=[preprocessor],
                    combiner=_combiner(kind, raw, eval_config, model_name, output_name)))
                computations.append(metric_types.DerivedMetricComputation(keys=[key],
                                                                          result=result))
        return computations

    @property
    def compute_confidence_interval(self) -> bool:
        return False


# Class names differ from TFMA's registered `Bleu` and `ExactMatch`: TFMA resolves a
# registered class name to its own class whatever module the config names.
class CorpusBleu(_TextMetric):
    KIND = "bleu"


class MeanRougeL(_TextMetric):
    KIND = "rouge_l"


class ExactMatchRate(_TextMetric):
    KIND = "exact_match"


# Metric name in results -> class name (all in this module), in report order.
TEXT_METRICS = {cls.KIND: cls.__name__ for cls in (CorpusBleu, MeanRougeL, ExactMatchRate)}
