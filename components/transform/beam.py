"""transform as a Beam pipeline: documents shards -> examples shards and statistics.

    documents shard i of a split -> TransformShard: examples shard i of the split, written
        by the task type's examples maker; count
    what the task type adds to a split (the LM's leftovers shard) -> more counts
    all counts -> statistics/stats.json

The task type's examples maker (`lm.LMExamples`, `tasks.ClassificationExamples`,
`tasks.TextToTextExamples`, chosen by `examples_for` in `__init__.py`) decides how
documents become examples and what is counted; this pipeline is the same for all. One
DoFn call turns one documents shard into one examples shard, so there is no shuffle of
tokens at all and the output is byte-identical whatever the runner's parallelism.
"""

from __future__ import annotations

import apache_beam as beam

from components.shared import counts, progress, shards
from components.transform.tokenize import load_batch_tokenizer
from pipeline.core import files
from pipeline.core.contracts import documents, examples


class TransformShard(beam.DoFn):
    """Documents shard index -> its examples shard written; yields the shard's count dict,
    and on the task type's tagged `outputs` what it hands on.

    Args:
        maker: the task type's examples maker (see the module docstring).
        split: `train` or `eval`.
        sources: the split's documents shard paths.
        targets: the split's examples shard paths (the first `len(sources)`).
        processes: how many processes tokenize (SentencePiece; see `tokenize`).
        meter: a `progress.Meter` counting the shards done, or None.
    """

    def __init__(self, maker, split: str, sources: list[str], targets: list[str],
                 processes: int, meter: progress.Meter | None = None):
        self.maker = maker
        self.split = split
        self.sources = sources
        self.targets = targets
        self.processes = processes
        self.meter = meter

    def setup(self):
        self.engine, self.info = load_batch_tokenizer(self.maker.tokenizer_dir, self.processes)

    def process(self, index: int):
        with shards.TFRecordFile(self.targets[index], self.maker.gzip) as out:
            total, handed_on = self.maker.write_shard(self.engine, self.info, self.split, index,
                                                     self.sources[index], out)
        if self.meter is not None:
            self.meter.add(shards=1)
        yield from handed_on
        yield total

    def teardown(self):
        self.engine.close()


def build_transform(pipeline, sources: dict[str, list[str]], documents_stats: dict, maker,
                    examples_dir: str, statistics_dir: str, processes: int = 1,
                    meter: progress.Meter | None = None) -> dict:
    """Add the transform stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        sources: split -> its documents shard paths (`split_sources`).
        documents_stats: the corpus's parsed documents `stats.json`.
        maker: the task type's examples maker (see the module docstring).
        examples_dir: where to write the TFRecords.
        statistics_dir: where to write `stats.json`.
        processes: how many processes each worker tokenizes with.
        meter: counts the documents shards transformed (up to `progress_totals`), or None.

    Returns:
        split -> list of the shard file names it will write.
    """
    names, all_counts = {}, []
    for split, paths in sources.items():
        names[split] = documents.shard_names(split, len(paths) + maker.extra_shards(split),
                                             examples.TFRECORD_SUFFIX)
        targets = [files.join(examples_dir, name) for name in names[split]]
        s = split.title()
        results = (pipeline
                   | f"{s}Shards" >> beam.Create(list(range(len(paths))))
                   | f"Distribute{s}" >> beam.Reshuffle()
                   | f"Transform{s}" >> beam.ParDo(TransformShard(
                       maker, split, paths, targets, processes, meter)
                   ).with_outputs(*maker.outputs, main="counts"))
        all_counts.append([results.counts, *maker.split_steps(split, results, targets)]
                          | f"Flatten{s}" >> beam.Flatten()
                          | f"Under{s}" >> beam.Map(
                              lambda c, split=split: {(split, *k): v for k, v in c.items()}))
    _ = (all_counts
         | "AllCounts" >> beam.Flatten()
         | "Count" >> counts.CountAll()
         | "WriteStatistics" >> shards.WriteJson(
             files.join(statistics_dir, documents.STATS_FILE),
             lambda total: maker.statistics(total, documents_stats)))
    return names


def split_sources(documents_dir: str, documents_stats: dict,
                  golden: tuple[str, dict] | None = None) -> dict[str, list[str]]:
    """Split -> its documents shard paths: the corpus's train and eval splits, and the
    golden set's documents (`(directory, stats)` of ingest's `golden` output) as a third
    split, `golden`, when there are any."""
    sources = {split: documents.split_paths(documents_dir, documents_stats, split)
               for split in documents.SPLITS}
    if golden is not None and golden[1]["documents_kept"]:
        sources[documents.GOLDEN_SPLIT] = documents.split_paths(*golden, documents.GOLDEN_SPLIT)
    return sources


def progress_totals(sources: dict[str, list[str]]) -> dict[str, int]:
    """What transform's progress lines count up to: the documents shards of every split."""
    return {"shards": sum(len(paths) for paths in sources.values())}
