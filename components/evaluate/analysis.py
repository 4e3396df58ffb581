"""Running TFMA over the eval split on Beam, and reading its results back as plain data."""

from __future__ import annotations

import json
import math

from pipeline.core.contracts.examples import FEATURE_SPEC_FILE
from components.evaluate.tfma_config import BASELINE, CANDIDATE, slice_name
from pipeline.core.errors import UsageError

EVAL_PATTERN = "eval-*.tfrecord"


def read_feature_spec(examples_dir: str) -> dict:
    """The examples artifact's `feature_spec.json` (any Beam filesystem).

    Raises:
        UsageError: it is missing or not JSON.
    """
    from apache_beam.io.filesystems import FileSystems

    spec_path = FileSystems.join(examples_dir, FEATURE_SPEC_FILE)
    try:
        with FileSystems.open(spec_path) as f:
            spec = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"{spec_path}: unreadable feature spec ({err.__class__.__name__})") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{spec_path}: expected a JSON object")
    return spec


def eval_files(examples_dir: str) -> tuple[str, str]:
    """The eval shards' glob and Beam compression type of an examples artifact.

    Any Beam filesystem works (a local directory, gs://...).

    Raises:
        UsageError: the artifact has no feature spec or no eval shards.
    """
    from apache_beam.io.filesystems import FileSystems

    spec = read_feature_spec(examples_dir)
    pattern = FileSystems.join(examples_dir, EVAL_PATTERN)
    if not FileSystems.match([pattern])[0].metadata_list:
        raise UsageError(f"{examples_dir}: no eval shards ({EVAL_PATTERN})")
    compression = spec.get("compression", "none")
    if compression not in ("none", "gzip"):
        raise UsageError(f"{FileSystems.join(examples_dir, FEATURE_SPEC_FILE)}: compression "
                         f"must be none or gzip, got {compression!r}")
    return pattern, ("gzip" if compression == "gzip" else "uncompressed")


def run_tfma(eval_config, *, candidate: str, baseline: str | None, examples_dir: str,
             output_dir: str, beam_args, batch_size: int, derived: tuple[str, ...] = (),
             length_buckets: tuple[int, ...] = ()) -> None:
    """Evaluate the candidate (and baseline) SavedModels with TFMA on a Beam pipeline.

    Args:
        eval_config: the `tfma.EvalConfig` (see `tfma_config.build_eval_config`).
        candidate: the candidate's SavedModel directory.
        baseline: the baseline's SavedModel directory, or None.
        examples_dir: the examples artifact (eval shards and feature spec).
        output_dir: where TFMA writes its results.
        beam_args: Beam pipeline options (e.g. an explicit DirectRunner running mode).
        batch_size: examples per inference call.
        derived: slice features to derive (see `slicing.features_to_derive`).
        length_buckets: boundaries of a derived `length_bucket`.
    """
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public import tfxio

    pattern, compression = eval_files(examples_dir)
    models = [_shared_model(eval_config, candidate, CANDIDATE)]
    if baseline is not None:
        models.append(_shared_model(eval_config, baseline, BASELINE))
    extractors = _extractors(eval_config, models, derived, length_buckets)
    records = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["lmpipe"],
                                        raw_record_column_name=tfma.ARROW_INPUT_COLUMN)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline:
        _ = (pipeline
             | "ReadEvalExamples" >> beam.io.ReadFromTFRecord(pattern, compression_type=compression)
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


def read_metrics(output_dir: str) -> dict:
    """TFMA's metrics as {model: {"overall": {...}, "slices": {"domain=x": {...}}}}.

    Diff metrics (candidate minus baseline) appear under model `diff`.
    """
    import tensorflow_model_analysis as tfma

    result: dict = {}
    for record in tfma.load_metrics(output_dir):
        name = slice_name(slice_features(record.slice_key))
        for item in record.metric_keys_and_values:
            if item.key.name.startswith("_"):
                continue
            model = "diff" if item.key.is_diff else (item.key.model_name or CANDIDATE)
            slices = result.setdefault(model, {"overall": {}, "slices": {}})
            target = slices["overall"] if name == "overall" else slices["slices"].setdefault(name, {})
            target[item.key.name] = plain(item.value)
    return result


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
