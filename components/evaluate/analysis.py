"""Running TFMA over the eval split on Beam, and reading its results back as plain data.

Every task type runs here: its `tfma.EvalConfig` (`tfma_config.py`) says which signature,
metrics and thresholds; the results come back by model, slice and, for a classifier's
per-class metrics, class.
"""

from __future__ import annotations

import math

from components.evaluate.tfma_config import BASELINE, CANDIDATE, slice_name
from pipeline.core.errors import UsageError

CONFUSION_PLOT = "multi_class_confusion_matrix_plot"


def eval_files(examples_dir: str, split: str = "eval") -> tuple[str, bool]:
    """The glob of a split's shards in an examples artifact (the eval split, or the golden
    set's), and whether they are gzipped.

    Any Beam filesystem works (a local directory, gs://...).

    Raises:
        UsageError: the artifact has no readable feature spec or no shards of `split`.
    """
    from pipeline.core import files
    from pipeline.core.contracts.examples import read_feature_spec, shard_pattern

    spec = read_feature_spec(examples_dir)
    pattern = shard_pattern(examples_dir, split)
    if not _matches(pattern):
        raise UsageError(f"{examples_dir}: no {split} shards ({files.basename(pattern)})")
    return pattern, spec["gzip"]


def _matches(pattern: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return bool(FileSystems.match([pattern])[0].metadata_list)


def run_tfma(eval_config, *, candidate: str, baseline: str | None, examples_dir: str,
             output_dir: str, beam_args, batch_size: int, derived: tuple[str, ...] = (),
             length_buckets: tuple[int, ...] = (), split: str = "eval") -> None:
    """Evaluate the candidate (and baseline) SavedModels with TFMA on a Beam pipeline.

    Args:
        eval_config: the `tfma.EvalConfig` (see `tfma_config.build_eval_config`).
        candidate: the candidate's SavedModel directory.
        baseline: the baseline's SavedModel directory, or None.
        examples_dir: the examples artifact (eval shards and feature spec).
        output_dir: where TFMA writes its results.
        beam_args: `pipeline.beam_args`; the options come from
            `pipeline.core.beam.pipeline_options`, as every Beam step's do.
        batch_size: examples per inference call.
        derived: slice features to derive (see `slicing.features_to_derive`).
        length_buckets: boundaries of a derived `length_bucket`.
        split: the examples evaluated: `eval`, or `golden` (the golden set's).
    """
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tfx_bsl.public import tfxio

    from pipeline.core.beam import pipeline_options

    pattern, gzip = eval_files(examples_dir, split)
    models = [_shared_model(eval_config, candidate, CANDIDATE)]
    if baseline is not None:
        models.append(_shared_model(eval_config, baseline, BASELINE))
    extractors = _extractors(eval_config, models, derived, length_buckets)
    records = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["lmpipe"],
                                        raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        _ = (pipeline
             | "ReadEvalExamples" >> beam.io.ReadFromTFRecord(
                 pattern, compression_type="gzip" if gzip else "uncompressed")
             | "ToRecordBatches" >> records.BeamSource(batch_size=batch_size)
             | "Evaluate" >> tfma.ExtractEvaluateAndWriteResults(
                 eval_config=eval_config, eval_shared_model=models, extractors=extractors,
                 output_path=output_dir))


def _extractors(eval_config, models: list, derived: tuple[str, ...],
                length_buckets: tuple[int, ...]) -> list:
    """TFMA's default extractors, with the derived slice features added just before slicing."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.extractors import slice_key_extractor

    from components.evaluate.slicing import derive_features

    extractors = tfma.default_extractors(eval_config=eval_config, eval_shared_model=models)
    extra = derive_features(derived, length_buckets)
    if extra is None:
        return extractors
    names = [e.stage_name for e in extractors]
    at = names.index(slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME)
    return extractors[:at] + [extra] + extractors[at:]


def _shared_model(eval_config, path: str, name: str):
    import tensorflow_model_analysis as tfma

    loader = tfma.types.ModelLoader(construct_fn=_SavedModelLoader(path), tags=["serve"])
    return tfma.default_eval_shared_model(eval_saved_model_path=path, eval_config=eval_config,
                                          model_name=name, custom_model_loader=loader)


class _SavedModelLoader:
    """Loads the SavedModel in whichever process runs inference (picklable for Beam).

    TFMA's own loader does not import tensorflow-text, whose ops the model's tokenizer
    needs; under a multi-process runner the worker has not imported it either.
    """

    def __init__(self, path: str):
        self.path = path

    def __call__(self):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

        return tf.saved_model.load(self.path, tags=["serve"])


def read_metrics(output_dir: str, labels: list[str] | tuple[str, ...] = ()) -> dict:
    """TFMA's metrics as {model: {"overall": {...}, "slices": {"domain=x": {...}}}}.

    Diff metrics (candidate minus baseline) appear under model `diff`. Per-class metrics
    (a classifier's) go under "classes" {label: {...}}: the model's for the overall
    slice, each slice's own inside it.

    Args:
        output_dir: TFMA's output directory.
        labels: the label vocabulary (class id -> name); () without per-class metrics.
    """
    import tensorflow_model_analysis as tfma

    result: dict = {}
    for record in tfma.load_metrics(output_dir):
        name = slice_name(slice_features(record.slice_key))
        for item in record.metric_keys_and_values:
            if item.key.name.startswith("_"):
                continue
            model = "diff" if item.key.is_diff else (item.key.model_name or CANDIDATE)
            document = result.setdefault(model, {"overall": {}, "slices": {}})
            overall = name == "overall"
            target = document["overall"] if overall else document["slices"].setdefault(name, {})
            if item.key.sub_key.HasField("class_id"):
                classes = (document if overall else target).setdefault("classes", {})
                label = labels[item.key.sub_key.class_id.value]
                target = classes.setdefault(label, {})
            target[item.key.name] = plain(item.value)
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


def read_validation(output_dir: str) -> list[dict]:
    """Every threshold TFMA found violated: metric, slice, threshold, value."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    validation = tfma.load_validation_result(output_dir)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        name = slice_name(slice_features(per_slice.slice_key))
        for failure in per_slice.failures:
            threshold = json_format.MessageToDict(failure.metric_threshold)
            failures.append({
                "metric": failure.metric_key.name, "slice": name,
                "kind": "change" if failure.metric_key.is_diff else "value",
                "threshold": threshold, "value": plain(failure.metric_value),
            })
    # With no thresholds at all TFMA reports "not ok" (missing_thresholds); our gate then
    # has nothing to refuse, so that alone is not a failure.
    unexplained = not validation.validation_ok and not validation.missing_thresholds
    if unexplained and not failures:
        failures.append({"metric": None, "slice": None, "kind": "validation",
                         "threshold": None, "value": None,
                         "reason": _validation_problem(validation)})
    return failures


def _validation_problem(validation) -> str:
    if validation.missing_slices:
        return f"slices with thresholds are missing: {list(validation.missing_slices)}"
    return "TFMA validation failed"


def slice_features(slice_key) -> dict:
    """A TFMA slice key as {feature: value}."""
    features = {}
    for key in slice_key.single_slice_keys:
        kind = key.WhichOneof("kind")
        value = getattr(key, kind) if kind else None
        features[key.column] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return features


def plain(value) -> float | None:
    """A TFMA MetricValue as a float (None for NaN, so the JSON stays valid, and for what
    is not a number)."""
    if value.WhichOneof("type") != "double_value":
        return None
    number = value.double_value.value
    return number if math.isfinite(number) else None
