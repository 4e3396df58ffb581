"""What evaluate does differently per task type: one object per `task.type`.

The stage (`components/evaluate/__init__.py`) has one code path: it checks the model and
the slices, runs TFMA, decides the blessing against TFMA's failed thresholds and writes
metrics.json, samples.json, blessing.json and the report. What a language model, a
classifier and a text-to-text task do differently is asked of the object `task_for`
picks:

    eval_config        the TFMA config: signature, metrics, gate (`tfma_config.py`)
    metrics_document   metrics.json from TFMA's results
    add_to_metrics     what metrics.json holds besides TFMA's numbers
    samples            samples.json
    settings           the evaluation settings recorded in blessing.json
    verdict_fields     what blessing.json holds besides the shared verdict
    write_report       the report page's title and sections (`report.py`)
    headline           the metrics reported first, and their log line
    summary            the run-level metrics for latest_run.json

A language model is judged against the model in service (`consults_baseline`); the
fine-tuning tasks are not compared with one yet. This module imports nothing heavy at the
top: the baseline resolver asks it on every pipeline run.

metrics.json of each task type:
    lm              {"objective": `causal` or `masked` (bert: perplexity, mean NLL and
                    accuracy over the masked tokens; bits_per_byte null, see
                    `objective.py`), "overall": {...}, "slices": {"domain=x": {...}},
                    "baseline": {"overall", "slices"} | null, "diff": ... | null,
                    "comparison": {metric: {candidate, baseline, change,
                    relative_change}} | null, "derived_slice_features": [names evaluate
                    derived], "variant": the export judged (`push.variant`) and its sizes,
                    "teacher": a distilled model's teacher, TFMA's metrics beside the
                    candidate's (not gated) | null (`compression.py`), "golden": the same
                    "overall", "slices", "baseline", "diff", "comparison" over the golden
                    set (`evaluation.golden_inputs`; absent without one)}
    classification  {"task", "overall", "classes" {label: {...}}, "slices" (each with its
                    own "classes"), "confusion" {"labels", "matrix", "source"},
                    "excluded" (the eval documents the transform left out, by reason and
                    unknown label), "baseline": null, "diff": null, "comparison": null}
    text_to_text    the same without "confusion" (and "classes" empty)
"""

from __future__ import annotations

from pipeline.core.errors import UsageError


class LanguageModel:
    """A language model (`task.type` lm): the LM metrics of `metrics.py` over the
    `score_examples` signature, gated by the `evaluation` section against the model in
    service.

    Args:
        training: the candidate's train summary (its objective, variants and teacher).
    """

    type = "lm"
    consults_baseline = True
    lineage_inputs = ("examples", "documents", "tokenizer")
    headline = ("perplexity", "bits_per_byte", "token_accuracy")

    def __init__(self, training: dict):
        from components.evaluate import objective

        self.training = training
        self.objective = objective.of_training(training)

    def eval_config(self, evaluation, with_baseline: bool):
        """The TFMA config (see `tfma_config.build_eval_config`)."""
        from components.evaluate import tfma_config

        return tfma_config.build_eval_config(evaluation, with_baseline=with_baseline,
                                             objective=self.objective)

    def start_line(self, examples: str, baseline) -> str:
        """The log line as TFMA starts."""
        return (f"[evaluate] TFMA over {examples}"
                + (f" against baseline version {baseline.properties.get('version')}"
                   if baseline else ""))

    def metrics_document(self, tfma_dir: str, baseline, derived: tuple[str, ...]) -> dict:
        """metrics.json: the candidate's metrics at the top, the baseline's and the diff
        beside; the metrics the objective does not support are there as null.

        Raises:
            RuntimeError: TFMA computed no examples or no target tokens.
        """
        from components.evaluate import analysis, blessing
        from components.evaluate.objective import CAUSAL_ONLY, computes
        from components.evaluate.tfma_config import BASELINE, CANDIDATE

        by_model = analysis.read_metrics(tfma_dir)
        for document in by_model.values():
            for values in (document.get("overall", {}), *document.get("slices", {}).values()):
                values.update({name: None for name in CAUSAL_ONLY
                               if not computes(name, self.objective)})
        candidate = by_model.get(CANDIDATE, {})
        overall = candidate.get("overall", {})
        # TFMA reports 0 rather than failing when it is misconfigured: refuse empty results.
        if not overall.get("example_count") or not overall.get("token_count"):
            raise RuntimeError(f"TFMA computed no examples or no target tokens: {overall}")
        base = by_model.get(BASELINE) if baseline else None
        return {"objective": self.objective, "overall": overall,
                "slices": candidate.get("slices", {}), "baseline": base,
                "diff": by_model.get("diff") if baseline else None,
                "comparison": (blessing.compare(overall, base["overall"], "baseline")
                               if base else None),
                "derived_slice_features": list(derived)}

    def add_to_metrics(self, metrics: dict, inputs: dict, outputs: dict, runtime, evaluation,
                       variant: str, derived: tuple[str, ...]) -> None:
        """The export judged and a distilled model's teacher (`compression.py`)."""
        from components.evaluate import compression

        compression.add_to_metrics(metrics, self.training, inputs, outputs, runtime,
                                   evaluation, variant, derived)

    def samples(self, inputs: dict, candidate: str, evaluation, runtime) -> dict:
        """samples.json: continuations of eval document beginnings (or why there are none)."""
        from components.evaluate import samples

        documents = inputs.get("documents")
        if documents is None or evaluation.num_samples == 0:
            reason = ("evaluation.num_samples is 0" if documents is not None
                      else "no documents input to take prompts from")
            result = {"skipped": reason, "samples": [], "summary": None}
        else:
            prompts = samples.pick_prompts(documents.uri, evaluation.num_samples,
                                           evaluation.sample_prompt_words)
            result = samples.continue_prompts(candidate, prompts, evaluation) if prompts else {
                "skipped": f"no eval document has more than {evaluation.sample_prompt_words} "
                           "words", "samples": [], "summary": None}
        if "skipped" in result:
            runtime.log(f"[evaluate] no samples: {result['skipped']}")
        return result

    def settings(self, evaluation, task) -> dict:
        """The settings blessing.json records: the `evaluation` section."""
        from pipeline.core.configio import to_dict

        return to_dict(evaluation)

    def verdict_fields(self, metrics: dict, evaluation, runtime) -> dict:
        """The comparison, the slices, the objective and the thresholds it cannot apply
        (each logged)."""
        from components.evaluate import objective

        skipped = objective.skipped_thresholds(evaluation, self.objective)
        for item in skipped:
            runtime.log(f"[evaluate] {item['setting']} skipped: {item['reason']}")
        return {"comparison": metrics["comparison"], "slices": metrics["slices"],
                "objective": self.objective, "skipped_thresholds": skipped}

    def write_report(self, directory: str, metrics: dict, verdict: dict, samples: dict,
                     evaluation) -> str:
        """The page: verdict, headline, compression, thresholds, slices with their charts,
        samples and settings."""
        from components.evaluate import report

        slices = report.ordered_slices(metrics.get("slices", {}), evaluation)
        charts = report.charts(directory, metrics, slices)
        return report.write_page(directory, "lmpipe evaluation", [
            report.verdict_section(verdict),
            report.headline_section(metrics, report.TABLE_METRICS, report.lm_caption(metrics)),
            report.golden_section(metrics, report.TABLE_METRICS),
            report.compression_section(metrics),
            report.failures_section(verdict),
            report.data_validation_section(verdict.get("data_anomalies")),
            report.lm_slices_section(metrics, slices, charts, evaluation),
            report.lm_samples_section(samples),
            report.settings_section(evaluation),
        ])

    def headline_line(self, headline: dict) -> str:
        """The headline metrics in the final log line."""
        from components.evaluate.report import fmt

        return ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in headline.items())

    @staticmethod
    def summary(metrics: dict, verdict: dict) -> dict:
        """Run-level metrics for latest_run.json (None for what was not computed)."""
        overall = metrics.get("overall", {})
        golden = (metrics.get("golden") or {}).get("overall", {})
        return {"eval_perplexity": overall.get("perplexity"),
                "eval_unigram_perplexity": overall.get("unigram_perplexity"),
                "eval_bits_per_byte": overall.get("bits_per_byte"),
                "eval_token_accuracy": overall.get("token_accuracy"),
                "golden_perplexity": golden.get("perplexity"),
                "golden_bits_per_byte": golden.get("bits_per_byte"),
                "blessed": verdict.get("blessed")}


class _FineTuning:
    """What the fine-tuning tasks share: the task signature of the export over the eval
    split, value thresholds on the overall slice (`task.min_*`), no baseline.

    Args:
        task: the `TaskConfig` section.
        labels: the label vocabulary (class id -> name) of the examples, [] for none.
    """

    consults_baseline = False
    lineage_inputs = ("examples", "tokenizer")
    # The overall metrics latest_run.json records.
    summary_metrics: tuple[str, ...] = ()

    def __init__(self, task, labels: list[str]):
        self.task = task
        self.type = task.type
        self.labels = labels

    def eval_config(self, evaluation, with_baseline: bool):
        """The TFMA config (see `tfma_config.build_task_eval_config`)."""
        from components.evaluate import tfma_config

        return tfma_config.build_task_eval_config(self.task, evaluation,
                                                  len(self.labels) or None)

    def start_line(self, examples: str, baseline) -> str:
        """The log line as TFMA starts."""
        return f"[evaluate] TFMA ({self.type}) over {examples}"

    def metrics_document(self, tfma_dir: str, baseline, derived: tuple[str, ...]) -> dict:
        """metrics.json: the candidate's metrics, overall, per class and per slice.

        Raises:
            RuntimeError: TFMA computed no examples.
        """
        from components.evaluate import analysis
        from components.evaluate.tfma_config import CANDIDATE

        candidate = analysis.read_metrics(tfma_dir, self.labels).get(CANDIDATE, {})
        metrics = {"task": self.type, "overall": candidate.get("overall", {}),
                   "classes": candidate.get("classes", {}),
                   "slices": candidate.get("slices", {}),
                   "baseline": None, "diff": None, "comparison": None}
        if not metrics["overall"].get("example_count"):
            raise RuntimeError(f"TFMA computed no examples: {metrics['overall']}")
        return metrics

    def add_to_metrics(self, metrics: dict, inputs: dict, outputs: dict, runtime, evaluation,
                       variant: str, derived: tuple[str, ...]) -> None:
        """The eval documents the transform left out (`excluded`)."""
        metrics["excluded"] = _excluded(inputs.get("statistics"))

    def settings(self, evaluation, task) -> dict:
        """The settings blessing.json records: the `evaluation` section and the task's."""
        from pipeline.core.configio import to_dict

        return {**to_dict(evaluation), "task": to_dict(task)}

    def verdict_fields(self, metrics: dict, evaluation, runtime) -> dict:
        """The slices; no comparison."""
        return {"comparison": None, "slices": metrics["slices"]}

    def write_report(self, directory: str, metrics: dict, verdict: dict, samples: dict,
                     evaluation) -> str:
        """The page: verdict, headline, thresholds, the task's own sections, slices, what
        the transform left out, samples."""
        from components.evaluate import report

        sections = [report.verdict_section(verdict),
                    report.headline_section(metrics, (*self.headline, "example_count"),
                                            "<p>TFMA over the eval split.</p>\n"),
                    report.failures_section(verdict),
                    report.data_validation_section(verdict.get("data_anomalies")),
                    *self._report_sections(directory, metrics),
                    report.task_slices_section(metrics, self.headline, evaluation),
                    report.excluded_section(metrics), report.completions_section(samples)]
        return report.write_page(directory, f"lmpipe evaluation ({self.type})", sections)

    def _report_sections(self, directory: str, metrics: dict) -> list[str]:
        return []

    def headline_line(self, headline: dict) -> str:
        """The headline metrics in the final log line."""
        return f"{self.type} {headline}"

    @classmethod
    def summary(cls, metrics: dict, verdict: dict) -> dict:
        """Run-level metrics for latest_run.json: the verdict and the task's headline
        metrics (None for what was not computed)."""
        overall = metrics.get("overall", {})
        return {"blessed": verdict.get("blessed"),
                **{f"eval_{n}": overall.get(n) for n in cls.summary_metrics}}


class Classification(_FineTuning):
    """`task.type` classification: accuracy, macro and per-class precision/recall/F1,
    one-vs-rest AUC (`classification.py`) and the confusion matrix of the
    `classify_examples` signature's argmax."""

    summary_metrics = ("accuracy", "macro_f1", "macro_auc")

    @property
    def headline(self) -> tuple[str, ...]:
        """The overall metrics reported first."""
        from components.evaluate import classification

        return classification.OVERALL

    def metrics_document(self, tfma_dir: str, baseline, derived: tuple[str, ...]) -> dict:
        """As every task's, with the overall confusion matrix."""
        from components.evaluate import analysis

        metrics = super().metrics_document(tfma_dir, baseline, derived)
        metrics["confusion"] = {"labels": self.labels,
                                **analysis.read_confusion(tfma_dir, len(self.labels))}
        return metrics

    def samples(self, inputs: dict, candidate: str, evaluation, runtime) -> dict:
        """None: a classifier writes no text."""
        return {"skipped": "classification", "samples": []}

    def _report_sections(self, directory: str, metrics: dict) -> list[str]:
        from components.evaluate import report

        return [report.classes_section(metrics, self.labels),
                report.confusion_section(directory, metrics)]


class TextToText(_FineTuning):
    """`task.type` text_to_text: corpus BLEU, ROUGE-L F1 and exact match of the
    `generate_examples` signature's greedy completions (`text_metrics.py`)."""

    summary_metrics = ("bleu", "rouge_l", "exact_match")

    @property
    def headline(self) -> tuple[str, ...]:
        """The overall metrics reported first."""
        from components.evaluate import text_metrics

        return tuple(text_metrics.TEXT_METRICS)

    def samples(self, inputs: dict, candidate: str, evaluation, runtime) -> dict:
        """Greedy completions of the first eval examples beside their references."""
        from components.evaluate import analysis, samples

        if evaluation.num_samples == 0:
            return {"skipped": "evaluation.num_samples is 0", "samples": []}
        pattern, gzip = analysis.eval_files(inputs["examples"].uri)
        return samples.complete_examples(candidate, pattern, gzip,
                                         evaluation.num_samples)


# task.type -> its evaluation.
TASK_TYPES = {"lm": LanguageModel, "classification": Classification,
              "text_to_text": TextToText}


def task_for(task, examples: str, examples_spec: dict, training: dict):
    """The evaluation of `task.type`, checked against the examples it is given.

    Args:
        task: the `TaskConfig` section.
        examples: the examples artifact's URI (for the error message).
        examples_spec: its feature spec (`task` entry: type and label vocabulary).
        training: the candidate's train summary ({} when it has none).

    Returns:
        A `LanguageModel`, `Classification` or `TextToText`.

    Raises:
        UsageError: the examples were written for another task type.
    """
    entry = examples_spec.get("task") or {}
    if entry.get("type", "lm") != task.type:
        raise UsageError(f"task.type is {task.type!r} but {examples} holds examples for "
                         f"{entry.get('type', 'lm')!r}")
    if task.type == "lm":
        return LanguageModel(training)
    return TASK_TYPES[task.type](task, entry.get("labels", []))


def summary(metrics: dict, verdict: dict) -> dict:
    """Run-level metrics for latest_run.json, as the task type of `metrics` reports them.

    Args:
        metrics: metrics.json ({} when there is none: a language model's keys, all None).
        verdict: blessing.json ({} when there is none).

    Returns:
        The task type's `summary`.
    """
    return TASK_TYPES[metrics.get("task", "lm")].summary(metrics, verdict)


def _excluded(statistics) -> dict | None:
    """The eval documents the transform left out (by reason, and unknown labels by name)."""
    from pipeline.core.contracts.documents import read_stats

    if statistics is None:
        return None
    try:
        split = read_stats(statistics.uri)["splits"]["eval"]
    except (OSError, ValueError, KeyError):
        return None
    return {"documents": split.get("documents"), "dropped": split.get("dropped"),
            "unknown_labels": split.get("unknown_labels")}
