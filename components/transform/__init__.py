"""transform (TFX Transform, apply phase): documents + tokenizer (+ labels) -> examples.

One code path for every `task.type`; what a task type does differently (how documents
become examples, what is counted, what `feature_spec.json` records) is its examples maker,
chosen by `examples_for`:

    lm              `lm.LMExamples`: documents tokenized and packed into windows
    classification  `tasks.ClassificationExamples`: one example per labeled document,
                    labels made ids with the `labels` input's vocabulary
    text_to_text    `tasks.TextToTextExamples`: one example per document with a target

Outputs `examples/` (sharded TFRecords of `tf.train.Example` and `feature_spec.json`; the
feature contract and the causal-LM target rule are in `pipeline/core/contracts/examples.py`)
and `statistics/`: `stats.json` (a language model's: every drop reason from ingest, tokens,
bytes, tokens per byte, packing efficiency, unknown-token rate, per-domain and
per-length-bucket counts, the length histogram; per split and in total; and two PNGs of
the length histogram and the per-domain token counts. A task's: per split documents,
examples, tokens, truncated, dropped by reason, per label, per domain). Same input and
config give byte-identical shards, whatever the runner's parallelism.
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec

SPEC = ComponentSpec(
    name="transform",
    module="components.transform",
    inputs={"documents": "Documents", "tokenizer": "Tokenizer", "labels": "LabelVocabulary",
            "golden": "Documents"},
    outputs={"examples": "Examples", "statistics": "Statistics"},
    config=("data", "transform", "task"),
    optional_inputs=("labels", "golden"),
)


def run(inputs, outputs, runtime, data, transform, task):
    """Turn the documents into the examples of the task type.

    Args:
        inputs: `documents` (ingest), `tokenizer` (tokenizer) and, for classification,
            `labels` (labels) artifacts; for a language model, `golden` (ingest's golden
            documents), whose documents become a third split, `golden`, packed as the eval
            split is.
        outputs: `examples` and `statistics` directories to write.
        runtime: the run's `Runtime` (Beam options in `beam_args`).
        data: the `DataConfig` (the label or target field of a task).
        transform: the `TransformConfig`.
        task: the `TaskConfig`.

    Returns:
        Properties: example counts per split, and the task type's statistics (a language
        model's packing efficiency and tokens per byte, a task's dropped documents).

    Raises:
        UsageError: a task's labels input is missing, its window has no room for an
            input, or no example of it is left in a split.
    """
    from components.transform.beam import split_sources
    from pipeline.core.contracts import documents

    documents_dir = inputs["documents"].uri
    documents_stats = documents.read_stats(documents_dir)
    if "spans" in documents_stats:
        from components.transform.by_span import transform_spans

        return transform_spans(inputs, outputs, runtime, data, transform, task,
                               documents_stats, transform_documents)
    sources = split_sources(documents_dir, documents_stats, _golden(inputs))
    return transform_documents(inputs, outputs, runtime, data, transform, task, sources,
                               documents_stats)


def transform_documents(inputs, outputs, runtime, data, transform, task,
                        sources: dict[str, list[str]], documents_stats: dict) -> dict:
    """Turn documents shards into the examples and statistics artifacts in `outputs`.

    Args:
        inputs, outputs, runtime, data, transform, task: as for `run`.
        sources: split -> its documents shard paths (`beam.split_sources`).
        documents_stats: the documents' `stats.json`.

    Returns:
        The output properties (see `run`).
    """
    from components.transform import plots
    from components.transform.tokenize import shutdown_pools
    from pipeline.core import files
    from pipeline.core.contracts import documents, examples
    from pipeline.core.contracts.tokenizer import INFO_FILE

    tokenizer = inputs["tokenizer"].uri
    pad_id = files.read_json(files.join(tokenizer, INFO_FILE))["special_tokens"]["pad"]
    maker = examples_for(task.type).create(inputs, data, transform, task, documents_stats,
                                           pad_id)
    processes = tokenizer_processes(transform, runtime.beam_args)
    try:
        _start_tokenizer(runtime, tokenizer, processes)
        preloading = _preload_plots() if maker.draws_plots else None
        shard_names = _run_pipeline(runtime, sources, documents_stats, maker, outputs,
                                    processes)
    finally:
        shutdown_pools()
    statistics = documents.read_stats(outputs["statistics"])
    maker.check(statistics)
    if preloading is not None:
        preloading.join()
        plots.write_plots(statistics, outputs["statistics"])
    splits = {split: {"shards": shard_names[split],
                      "examples": statistics["splits"][split]["examples"]}
              for split in shard_names}
    examples.write_feature_spec(outputs["examples"], examples.feature_spec(
        transform.sequence_length, pad_id, transform.gzip, splits,
        list(transform.length_buckets), maker.spec_entry()))
    for line in maker.log_lines(statistics):
        runtime.log(line)
    return {"examples": {split: splits[split]["examples"] for split in splits},
            "statistics": maker.properties(statistics)}


def _golden(inputs) -> tuple[str, dict] | None:
    """(directory, stats) of the golden documents input, None without one."""
    from pipeline.core.contracts import documents

    golden = inputs.get("golden")
    return None if golden is None else (golden.uri, documents.read_stats(golden.uri))


def examples_for(task_type: str):
    """The examples maker class of `task_type` (the transform's one seam per task type).

    Args:
        task_type: `task.type`.

    Returns:
        A class whose `create(inputs, data, transform, task, documents_stats, pad_id)`
        gives the run's maker. The pipeline (`beam.py`) uses its `tokenizer_dir`,
        `gzip`, `outputs`, `extra_shards`, `write_shard`, `split_steps` and
        `statistics`; `run` its `draws_plots`, `check`, `spec_entry`, `log_lines` and
        `properties`.
    """
    from components.transform.lm import LMExamples
    from components.transform.tasks import ClassificationExamples, TextToTextExamples

    return {"lm": LMExamples, "classification": ClassificationExamples,
            "text_to_text": TextToTextExamples}[task_type]


def _start_tokenizer(runtime, tokenizer: str, processes: int) -> None:
    """Start the tokenizer's worker processes before Beam builds and starts the pipeline,
    so their startup overlaps it (they serve the DoFns only when those run here)."""
    from pipeline.core.beam import single_process
    from components.transform.tokenize import start_workers

    if single_process(runtime.beam_args):
        start_workers(tokenizer, processes)


def _preload_plots():
    """Import the plotting library in a thread while the pipeline runs, when the main
    thread mostly waits on the tokenizer processes; returns the started thread."""
    import threading

    from components.transform import plots

    preloading = threading.Thread(target=plots.preload, daemon=True)
    preloading.start()
    return preloading


def _run_pipeline(runtime, sources: dict[str, list[str]], documents_stats: dict, maker,
                  outputs, processes: int) -> dict:
    import apache_beam as beam

    from pipeline.core.beam import pipeline_options
    from components.shared import progress
    from components.transform.beam import build_transform, progress_totals

    totals = progress_totals(sources)
    with (progress.reporting(runtime.log, "transform", totals) as meter,
          beam.Pipeline(options=pipeline_options(runtime.beam_args)) as pipeline):
        return build_transform(pipeline, sources, documents_stats, maker,
                               outputs["examples"], outputs["statistics"], processes, meter)


def tokenizer_processes(transform, beam_args) -> int:
    """`transform.tokenizer_processes`, or when unset: every core if Beam runs in this one
    process (DirectRunner in_memory), else 1 (the runner already has a worker per core)."""
    import os

    from pipeline.core.beam import single_process

    if transform.tokenizer_processes is not None:
        return transform.tokenizer_processes
    return (os.cpu_count() or 1) if single_process(beam_args) else 1
