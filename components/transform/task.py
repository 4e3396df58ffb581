"""transform for the fine-tuning tasks: documents + tokenizer (+ labels) -> task examples.

The DAG runs this module as its `transform` node when `task.type` is `classification`
or `text_to_text` (`pipeline/dag.py`); `components/transform/__init__.py` packs documents for the
LM. One example per document, never packed (`components/transform/task_examples.py` holds the
feature contract, `components/transform/task_beam.py` the pipeline and the drop
rules). Outputs, in the LM transform's layout:

    examples/     train-*.tfrecord, eval-*.tfrecord, feature_spec.json (with `task`: the
                  batch features, the label vocabulary, the separator's ids, the budgets)
    statistics/   stats.json: per split documents, examples, tokens, truncated, dropped by
                  reason, per label, per unknown label, per domain
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec

SPEC = ComponentSpec(
    name="transform",
    module="components.transform.task",
    inputs={"documents": "Documents", "tokenizer": "Tokenizer", "labels": "LabelVocabulary"},
    outputs={"examples": "Examples", "statistics": "Statistics"},
    config=("data", "transform", "task"),
    optional_inputs=("labels",),
)


def run(inputs, outputs, runtime, data, transform, task):
    """Turn each document into one example of the task.

    Args:
        inputs: `documents`, `tokenizer`, and `labels` (classification).
        outputs: `examples` and `statistics` directories to write.
        runtime: the run's `Runtime` (Beam options in `beam_args`).
        data: the `DataConfig` (the label or target field).
        transform: the `TransformConfig` (sequence length, compression, length buckets).
        task: the `TaskConfig`.

    Returns:
        Properties: example counts per split and the dropped documents.

    Raises:
        UsageError: no example is left in a split, or the window has no room for an input.
    """
    import apache_beam as beam

    from pipeline.core import files
    from pipeline.core.contracts import documents, examples
    from pipeline.core.beam import pipeline_options
    from components.transform.task_beam import build_task_transform
    from components.transform.tokenize import shutdown_pools
    from components.transform import tokenizer_processes
    from pipeline.core.contracts.tokenizer import INFO_FILE

    documents_dir, tokenizer = inputs["documents"].uri, inputs["tokenizer"].uri
    documents_stats = documents.read_stats(documents_dir)
    pad_id = files.read_json(files.join(tokenizer, INFO_FILE))["special_tokens"]["pad"]
    setup = _setup(inputs, data, transform, task, documents_stats)
    entry = task_entry(setup, _separator_ids(setup))
    try:
        with beam.Pipeline(options=pipeline_options(runtime.beam_args)) as pipeline:
            names = build_task_transform(pipeline, documents_dir, documents_stats, setup,
                                         outputs["examples"], outputs["statistics"],
                                         tokenizer_processes(transform, runtime.beam_args))
    finally:
        shutdown_pools()
    statistics = documents.read_stats(outputs["statistics"])
    splits = {split: {"shards": names[split],
                      "examples": statistics["splits"][split]["examples"]}
              for split in documents.SPLITS}
    _check(statistics, task)
    files.write_json(files.join(outputs["examples"], examples.FEATURE_SPEC_FILE),
                      examples.feature_spec(transform.sequence_length, pad_id,
                                                 transform.compression, splits,
                                                 list(transform.length_buckets), entry))
    for split in documents.SPLITS:
        s = statistics["splits"][split]
        runtime.log(f"[transform] {task.type} {split}: {s['examples']} examples of "
                    f"{s['documents']} documents; dropped {s['dropped']}; "
                    f"{s['truncated']} cut to the window")
    return {"examples": {split: splits[split]["examples"] for split in documents.SPLITS},
            "statistics": {split: statistics["splits"][split]["dropped"]
                           for split in documents.SPLITS}}


def _setup(inputs, data, transform, task, documents_stats):
    from components.labels import vocabulary as labels
    from components.shared.domains import listed_domains
    from components.transform.task_beam import TaskSetup, cleaning_settings
    from pipeline.core.errors import UsageError

    common = dict(task_type=task.type, tokenizer_dir=inputs["tokenizer"].uri,
                  sequence_length=transform.sequence_length, compression=transform.compression,
                  length_buckets=tuple(transform.length_buckets), domain_field=data.domain_field,
                  listed=listed_domains(documents_stats))
    if task.type == "classification":
        if inputs.get("labels") is None:
            raise UsageError("task.type classification: the transform needs the labels input")
        vocabulary = labels.read_vocabulary(inputs["labels"].uri)
        return TaskSetup(**common, field=data.label_field, labels=tuple(vocabulary["labels"]))
    return TaskSetup(**common, field=data.target_field, separator=task.separator,
                     max_target_tokens=task.max_target_tokens,
                     cleaning=cleaning_settings(documents_stats))


def _separator_ids(setup) -> list[int]:
    """The separator's token ids (text_to_text), as the transform's workers encode it."""
    if setup.task_type != "text_to_text":
        return []
    from components.transform.task_examples import input_budget
    from components.transform.tokenize import load_batch_tokenizer
    from pipeline.core.errors import UsageError

    engine, _ = load_batch_tokenizer(setup.tokenizer_dir)
    try:
        ids = engine.encode([setup.separator])[0][0]
    finally:
        engine.close()
    budget = input_budget(setup.sequence_length, ids, setup.max_target_tokens)
    if budget < 1:
        raise UsageError(f"transform.sequence_length {setup.sequence_length} leaves no room for "
                         f"the input after the separator ({len(ids)} tokens) and "
                         f"task.max_target_tokens ({setup.max_target_tokens})")
    return [int(i) for i in ids]


def task_entry(setup, separator_ids: list[int]) -> dict:
    """The `task` entry of `feature_spec.json`: what the trainer and the export need."""
    from components.transform.task_examples import input_budget

    entry = {"type": setup.task_type, "field": setup.field}
    if setup.task_type == "classification":
        entry["labels"] = list(setup.labels)
    else:
        entry.update(separator=setup.separator, separator_ids=separator_ids,
                     max_target_tokens=setup.max_target_tokens,
                     input_budget=input_budget(setup.sequence_length, separator_ids,
                                               setup.max_target_tokens))
    return entry


def _check(statistics: dict, task) -> None:
    from pipeline.core.errors import UsageError

    for split in ("train", "eval"):
        s = statistics["splits"][split]
        if s["examples"] == 0:
            raise UsageError(f"task.type {task.type}: no {split} example is left "
                             f"({s['documents']} documents; dropped {s['dropped']})")
