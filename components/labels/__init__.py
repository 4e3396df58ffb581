"""labels (TFX Transform, analyze phase): documents -> the label vocabulary of a classifier.

Runs only for `task.type: classification` (`pipeline/dag.py`). One Beam pass over both
splits of the documents artifact counts every label of `data.label_field` and the
unlabeled documents; the vocabulary is the train split's labels (see
`components/labels/vocabulary.py` for the rules, `pipeline/core/contracts/labels.py` for the
artifact layout). The transform turns labels into ids with it; eval labels missing from it
are counted there, not guessed.
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec

SPEC = ComponentSpec(
    name="labels",
    module="components.labels",
    inputs={"documents": "Documents"},
    outputs={"labels": "LabelVocabulary"},
    config=("data",),
)

# A classifier needs at least this many classes.
MIN_LABELS = 2


def run(inputs, outputs, runtime, data):
    """Count the labels of the documents and write the vocabulary.

    Args:
        inputs: `documents`, the ingest artifact.
        outputs: `labels`, the directory to write.
        runtime: the run's `Runtime` (Beam options in `beam_args`).
        data: the `DataConfig` (`label_field`, `domain_field`).

    Returns:
        Properties of the labels artifact: the number of labels and the unlabeled counts.

    Raises:
        UsageError: the train split has fewer than two labels, or a label with a line break.
    """
    import apache_beam as beam

    from components.shared import progress
    from pipeline.core.beam import pipeline_options
    from pipeline.core.contracts import documents, labels
    from pipeline.core.errors import UsageError

    documents_dir = inputs["documents"].uri
    stats = documents.read_stats(documents_dir)
    shards = [(split, path) for split in documents.SPLITS
              for path in documents.split_paths(documents_dir, stats, split)]
    with (progress.reporting(runtime.log, "labels", {"shards": len(shards)}) as meter,
          beam.Pipeline(options=pipeline_options(runtime.beam_args)) as pipeline):
        build_labels(pipeline, shards, data, labels.vocabulary_path(outputs["labels"]), meter)
    vocabulary = labels.read_vocabulary(outputs["labels"])
    names = vocabulary["labels"]
    if len(names) < MIN_LABELS:
        raise UsageError(f"data.label_field {data.label_field!r}: the train split has "
                         f"{len(names)} distinct label(s) ({names}); classification needs at "
                         f"least {MIN_LABELS} ({vocabulary['unlabeled']['train']} train "
                         "documents have none)")
    broken = [name for name in names if name.splitlines() != [name]]
    if broken:
        # labels.txt holds one label per line, its line number the id: a line break in a
        # label (often a stray trailing newline) would shift every id after it.
        raise UsageError(f"data.label_field {data.label_field!r}: the label {broken[0]!r} "
                         f"holds a line break ({vocabulary['counts']['train'][broken[0]]} train "
                         f"documents); labels are one line each, clean the field in the data")
    labels.write_labels_file(outputs["labels"], names)
    runtime.log(f"[labels] {len(names)} labels; unlabeled documents: {vocabulary['unlabeled']}; "
                f"labels only in eval: {vocabulary['eval_only'] or 'none'}")
    return {"labels": {"num_labels": len(names), "unlabeled": vocabulary["unlabeled"],
                       "eval_only": len(vocabulary["eval_only"])}}


class CountShardLabels:
    """A `(split, documents shard path)` -> the label counts of that shard (picklable).

    Args:
        label_field: `data.label_field`.
        domain_field: `data.domain_field`.
        meter: a `progress.Meter` counting the shards done, or None.
    """

    def __init__(self, label_field: str, domain_field: str | None, meter=None):
        self.label_field = label_field
        self.domain_field = domain_field
        self.meter = meter

    def __call__(self, shard: tuple[str, str]) -> dict:
        import json

        from components.labels.vocabulary import split_counts
        from components.shared.shards import read_jsonl_gz_lines

        split, path = shard
        records = (json.loads(line) for line in read_jsonl_gz_lines(path))
        counted = split_counts(records, split, self.label_field, self.domain_field)
        if self.meter is not None:
            self.meter.add(shards=1)
        return counted


def build_labels(pipeline, shards: list[tuple[str, str]], data, target: str,
                 meter=None) -> None:
    """Add the label-counting stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        shards: `(split, path)` of every documents shard.
        data: the `DataConfig`.
        target: the `vocabulary.json` to write.
        meter: a `progress.Meter` counting the shards done, or None.
    """
    import apache_beam as beam

    from components.labels.vocabulary import build_vocabulary
    from components.shared import counts, shards as shard_files

    _ = (pipeline
         | "Shards" >> beam.Create(shards)
         | "Distribute" >> beam.Reshuffle()
         | "CountLabels" >> beam.Map(CountShardLabels(data.label_field, data.domain_field,
                                                        meter))
         | "Sum" >> counts.CountAll()
         | "WriteVocabulary" >> shard_files.WriteJson(
             target, lambda total: build_vocabulary(total, data.label_field)))
