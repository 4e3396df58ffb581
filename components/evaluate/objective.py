"""What a candidate's LM metrics mean, given the objective it was trained with.

A causal LM (gpt, llama) predicts every token from the tokens before it: its perplexity
and bits per byte are the usual ones. A masked LM (bert) is scored as it was trained
(`models/export.py`): the NLL of the ~15% chosen tokens, each predicted from both sides.
Its perplexity, mean NLL and accuracy are masked-token metrics and say so (`objective` in
metrics.json and blessing.json, labels on the report). Bits per byte would divide the NLL
of 15% of the tokens by all of the bytes, a number comparable with nothing: it is not
computed (null), and the thresholds on it are skipped with the reason recorded, as TFMA
has no threshold on a metric that is not configured.
"""

from __future__ import annotations

CAUSAL = "causal"
MASKED = "masked"
# Metrics that only a causal LM's scores support.
CAUSAL_ONLY = ("bits_per_byte",)
# evaluation settings that gate a causal-only metric.
CAUSAL_ONLY_SETTINGS = {"max_bits_per_byte_increase": "bits_per_byte",
                        "max_slice_bits_per_byte_increase": "bits_per_byte"}


def of_training(training: dict) -> str:
    """The objective recorded by a model artifact's `train_summary.json`.

    Args:
        training: the train summary ({} for a model without one, e.g. a hand-built
            SavedModel: taken as causal, the serving contract's default).

    Returns:
        `causal` or `masked`.
    """
    from pipeline.core.config import FAMILY_OBJECTIVES

    model = training.get("model") or {}
    task = (training.get("task") or {}).get("type", "lm")
    if task != "lm":
        return CAUSAL
    if model.get("objective") in (CAUSAL, MASKED):
        return model["objective"]
    return FAMILY_OBJECTIVES.get(model.get("family"), CAUSAL)


def computes(metric: str, objective: str) -> bool:
    """Whether `metric` is computed for a model trained with `objective`."""
    return objective != MASKED or metric not in CAUSAL_ONLY


def skipped_thresholds(evaluation, objective: str) -> list[dict]:
    """The configured thresholds that cannot apply to this objective, with why.

    Args:
        evaluation: the `EvaluationConfig` section.
        objective: the candidate's objective.

    Returns:
        [{"setting", "value", "metric", "reason"}] (empty for a causal LM).
    """
    skipped = []
    for setting, metric in CAUSAL_ONLY_SETTINGS.items():
        value = getattr(evaluation, setting)
        if value is None or computes(metric, objective):
            continue
        skipped.append({"setting": f"evaluation.{setting}", "value": value, "metric": metric,
                        "reason": f"a {objective} LM has no {metric}: its NLL covers only "
                                  "the masked tokens, not every byte of the text"})
    return skipped
