"""ingest as a Beam pipeline: read raw records, clean them, split, deduplicate, write shards.

    file ranges (+ BigQuery row batches) -> ReadAndClean -> (split, batch of documents)
                -> Reshard -> ((split, shard), batch) -> GroupByKey
                -> WriteShard (sort by id, drop duplicates, split over-long documents,
                   write one .jsonl.gz)
    counts of both stages -> stats.json

A document's shard is a function of its id (the hash of its cleaned text), so exact
duplicates meet in one shard, sorted next to each other, wherever they came from: one
shuffle does the grouping, the global deduplication and the deterministic order. A
split's number of shards comes from the bytes of cleaned text read into it (a side
input summed from `ReadAndClean`'s counts), not from the input files' sizes: the same
documents give the same shards, and so the same TFRecords downstream, whether they came
as JSONL, compressed, or as Parquet.
Documents travel in batches rather than one by one, which keeps Beam's per-element cost
off the hot path.
"""

from __future__ import annotations

import json

import apache_beam as beam

from components.ingest import bigquery, cleaning
from components.ingest.bigquery import RowBatch
from components.ingest.exclusions import Exclusions
from components.shared import counts, progress, shards
from pipeline.core import files
from pipeline.core.contracts import documents
from components.shared.domains import fold_counts, kept_domains
from components.ingest.records import (LINE_FORMATS, FileRange, RecordReader, compression_of,
                                       plan_ranges, require_fields)
from components.ingest.sources import file_format

BATCH_BYTES = 4 * 2**20
# A range's bytes read go on the progress meter in steps of this size (not per record).
PROGRESS_BYTES = 2**20


class ReadAndClean(beam.DoFn):
    """A file range, or a batch of BigQuery rows -> `(split, [(id, line, domain, bytes,
    chars), ...])` batches, and one count dict per element on the `counts` output (with
    each split's bytes of text, `("text_bytes", split)`, which size its shards).

    Args:
        data: the `DataConfig`.
        excluded: the documents kept out of both splits, and why (`exclusions.py`): the
            golden eval set's and, with data spans, earlier spans'; loaded in `setup`.
        metered: where the files and bytes read are counted (`InputProgress`), or None.
    """

    def __init__(self, data, excluded: Exclusions = Exclusions(),
                 metered: InputProgress | None = None):
        self.data = data
        self.excluded = excluded
        self.metered = metered

    def setup(self):
        self.cleaner = cleaning.Cleaner(self.data)
        self.excluded_ids = self.excluded.load()

    def process(self, source: FileRange | RowBatch):
        total = {}
        if isinstance(source, RowBatch):
            yield from self._clean(source.rows, "bigquery", total)
            counts.add_counts(total, {("bigquery_rows",): len(source.rows)})
        else:
            reader = RecordReader(source, self.data.txt_mode)
            read = _RangeProgress(self.metered, source)
            yield from self._clean(reader, file_format(source.path), total, read.record)
            read.done()
            counts.add_counts(total, _range_counts(source, reader, total.get(("read",), 0)))
        yield beam.pvalue.TaggedOutput("counts", total)

    def _clean(self, records, fmt: str, total: dict, on_record=None):
        """Clean `records` of format `fmt` into keyed batches; count into `total`."""
        batches, sizes, read = {}, {}, 0
        for raw in records:
            read += 1
            if on_record is not None:
                on_record(raw)
            document, reason, changes = self.cleaner.clean(raw, fmt)
            if document is None:
                counts.add_counts(total, {("dropped", reason): 1})
                continue
            for change in changes:
                counts.add_counts(total, {("changed", change): 1})
            key, item = self._keyed(document)
            if item[0] in self.excluded_ids:
                counts.add_counts(total, {("dropped", self.excluded_ids[item[0]]): 1})
                continue
            batches.setdefault(key, []).append(item)
            total[("text_bytes", key)] = total.get(("text_bytes", key), 0) + item[3]
            sizes[key] = sizes.get(key, 0) + len(item[1])
            if sizes[key] >= BATCH_BYTES:
                yield key, batches.pop(key)
                sizes[key] = 0
        yield from batches.items()
        counts.add_counts(total, {("read",): read})

    def _keyed(self, document: dict) -> tuple[str, tuple]:
        """`(split, (id, line, domain, bytes, chars))`: the split comes from the document
        id, the hash of its cleaned text."""
        encoded = document["text"].encode("utf-8")
        doc_id = cleaning.document_id_of_bytes(encoded)
        split = cleaning.split_of(doc_id, self.data.split_salt, self.data.eval_fraction)
        return split, (doc_id, cleaning.encode_document(document), document["domain"],
                     len(encoded), len(document["text"]))


class InputProgress:
    """What ingest's progress counts (picklable): the files and bytes read.

    Args:
        meter: a `progress.Meter`.
        sources: `(path, size)` of the matched input files.
    """

    def __init__(self, meter: progress.Meter, sources: list[tuple[str, int]]):
        self.meter = meter
        self.sizes = dict(sources)

    @staticmethod
    def totals(sources: list[tuple[str, int]]) -> dict[str, int]:
        """What the progress lines count up to: the input files and their bytes."""
        return {"files": len(sources), "bytes": sum(size for _, size in sources)}


class _RangeProgress:
    """The bytes of one file range read so far, put on the meter every `PROGRESS_BYTES`
    and made up to the range's size at its end, so that the step's bytes end at the
    input's size. Record lengths estimate the bytes read of an uncompressed line file only
    (a compressed file's records are larger than its bytes, a row has no length): other
    files count at their end.

    Args:
        metered: an `InputProgress`, or None (nothing is counted).
        file_range: the range.
    """

    def __init__(self, metered: InputProgress | None, file_range: FileRange):
        self.meter = metered.meter if metered else None
        file_size = metered.sizes.get(file_range.path, 0) if metered else 0
        end = file_range.end if file_range.end is not None else file_size
        self.size = max(end - file_range.start, 0)
        self.last = end >= file_size
        self.estimate = (not compression_of(file_range.path)
                         and file_format(file_range.path) in LINE_FORMATS)
        self.pending = self.reported = 0

    def record(self, raw: bytes) -> None:
        if self.meter is None or not self.estimate:
            return
        self.pending += len(raw) + 1  # the line break the record lost
        if self.pending >= PROGRESS_BYTES:
            amount = min(self.pending, self.size - self.reported)
            self.meter.add(bytes=amount)
            self.reported += amount
            self.pending = 0

    def done(self) -> None:
        """The range is read: the rest of its bytes, and its file when it is the last."""
        if self.meter is not None:
            self.meter.add(bytes=self.size - self.reported, files=int(self.last))


def _range_counts(file_range: FileRange, reader: RecordReader, records: int) -> dict:
    """What became of a range's file (`records` were read from the range): counted by
    the file's first range only, as every range of a file reads or skips it alike."""
    total = {}
    if file_range.start == 0:
        empty = records == 0 and reader.skipped is None and reader.error is None
        total.update({("files", "read"): 1, ("files", "empty"): int(empty)})
        if reader.skipped is not None:
            total[("skipped_file", file_range.path, reader.skipped)] = 1
    if reader.error is not None:
        total[("corrupt_file", file_range.path, reader.error)] = 1
    return total


def shard_counts_of(total: dict) -> dict[str, int]:
    """split -> its number of document shards, one per 64 MB of cleaned text read into it
    (from `ReadAndClean`'s counts, before deduplication)."""
    return {split: shards.num_shards_for(total.get(("text_bytes", split), 0))
            for split in documents.SPLITS}


def shard_names_of(shard_counts: dict[str, int]) -> dict[str, list[str]]:
    """split -> its shard file names."""
    return {split: documents.shard_names(split, count, documents.DOCUMENTS_SUFFIX)
            for split, count in shard_counts.items()}


class Reshard(beam.DoFn):
    """`(split, batch)` -> `((split, shard), batch)` for each shard the batch's documents
    fall in; the shard is the document id modulo the split's shard count (a side input)."""

    def process(self, keyed, shard_counts: dict[str, int]):
        split, items = keyed
        count, by_shard = shard_counts[split], {}
        for item in items:
            by_shard.setdefault(int(item[0][:16], 16) % count, []).append(item)
        for shard, batch in by_shard.items():
            yield (split, shard), batch


class WriteShard(beam.DoFn):
    """`((split, shard), batches)` -> one sorted, deduplicated `.jsonl.gz` file; yields
    its count dict. Takes the splits' shard counts as a side input (for the file names).

    Args:
        data: the `DataConfig`.
        directory: the documents artifact directory.
    """

    def __init__(self, data, directory: str):
        self.data = data
        self.directory = directory

    def process(self, keyed, shard_counts: dict[str, int]):
        (split, shard), batches = keyed
        items = sorted(item for batch in batches for item in batch)
        lines, previous = [], None
        kept = duplicates = long_documents = 0
        domains = {}
        for doc_id, line, domain, num_bytes, num_chars in items:
            if doc_id == previous and self.data.dedup:
                duplicates += 1
                continue
            previous = doc_id
            pieces = [line]
            if num_chars > self.data.max_chars:
                pieces = split_document(line, self.data.max_chars)
                long_documents += 1
            lines.extend(pieces)
            kept += 1
            counted = domains.setdefault(domain, [0, 0])
            counted[0] += len(pieces)
            counted[1] += num_bytes
        name = shard_names_of(shard_counts)[split][shard]
        shards.write_jsonl_gz(files.join(self.directory, name), lines)
        total = {("kept",): kept, ("dropped", "duplicate"): duplicates,
                 ("long_documents_split",): long_documents,
                 ("split", split, "documents"): sum(d for d, _ in domains.values()),
                 ("split", split, "bytes"): sum(b for _, b in domains.values())}
        for domain, (count, num_bytes) in domains.items():
            total[("domain", split, domain, "documents")] = count
            total[("domain", split, domain, "bytes")] = num_bytes
        yield total


def split_document(line: str, max_chars: int) -> list[str]:
    """A documents line whose text is over-long -> one line per piece of its text."""
    document = json.loads(line)
    return [cleaning.encode_document({**document, "text": piece})
            for piece in cleaning.split_long(document["text"], max_chars)]


def format_stats(total: dict, data, num_files: int) -> dict:
    """The documents artifact's `stats.json` from the summed counts.

    Args:
        total: summed counts (tuple keys, see `ReadAndClean` and `WriteShard`).
        data: the `DataConfig`.
        num_files: how many input files were matched.

    Returns:
        The JSON-ready statistics.
    """
    per_split = {split: {} for split in documents.SPLITS}
    for key, value in total.items():
        if key[0] == "domain":
            per_split[key[1]].setdefault(key[2], {"documents": 0, "bytes": 0})[key[3]] = value
    everywhere = {}
    for split_domains in per_split.values():
        for domain, values in split_domains.items():
            everywhere[domain] = everywhere.get(domain, 0) + values["documents"]
    kept = kept_domains(everywhere, data.max_domains)
    names = shard_names_of(shard_counts_of(total))
    splits = {split: {"documents": total.get(("split", split, "documents"), 0),
                      "bytes": total.get(("split", split, "bytes"), 0),
                      "domains": fold_counts(per_split[split], kept),
                      "shards": names[split]}
              for split in documents.SPLITS}
    corrupt = [{"path": path, "error": error}
               for _, path, error in sorted(key for key in total if key[0] == "corrupt_file")]
    skipped = [{"path": path, "reason": reason}
               for _, path, reason in sorted(key for key in total if key[0] == "skipped_file")]
    return {
        "format": "jsonl.gz",
        "fields": ["text", "domain", "meta"],
        "normalization": data.normalization,
        "cleaning": {"invalid_utf8": data.invalid_utf8, "control_chars": data.control_chars,
                     "whitespace": data.whitespace, "min_chars": data.min_chars,
                     "max_chars": data.max_chars, "dedup": data.dedup},
        "split_salt": data.split_salt,
        "eval_fraction": data.eval_fraction,
        "input_files": num_files,
        "files": {"read": total.get(("files", "read"), 0),
                  "empty": total.get(("files", "empty"), 0),
                  **{reason: sum(s["reason"] == reason for s in skipped)
                     for reason in cleaning.FILE_SKIP_REASONS},
                  "skipped": skipped, "corrupt": corrupt},
        **({"bigquery_rows": total.get(("bigquery_rows",), 0)} if data.bigquery else {}),
        "documents_read": total.get(("read",), 0),
        "documents_kept": total.get(("kept",), 0),
        "dropped": {reason: total.get(("dropped", reason), 0) for reason in cleaning.DROP_REASONS},
        "changed": {step: total.get(("changed", step), 0) for step in cleaning.CHANGES},
        "long_documents_split": total.get(("long_documents_split",), 0),
        "domains_folded": len(everywhere) - len(kept),
        "splits": splits,
    }


def build_ingest(pipeline, sources: list[tuple[str, int]], data, output_dir: str,
                 excluded: Exclusions = Exclusions(),
                 meter: progress.Meter | None = None) -> None:
    """Add the ingest stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        sources: `(path, size)` of the matched input files.
        data: the `DataConfig` (with `bigquery`, its rows are read beside the files).
        output_dir: the documents artifact directory.
        excluded: the documents kept out of both splits (see `ReadAndClean`).
        meter: counts the files and bytes read (up to `InputProgress.totals`), or None.
    """
    require_fields([path for path, _ in sources], data)
    metered = InputProgress(meter, sources) if meter is not None else None
    inputs = (pipeline
              | "Ranges" >> beam.Create(plan_ranges(sources, data.txt_mode))
              | "Distribute" >> beam.Reshuffle())
    if data.bigquery is not None:
        rows = pipeline | "BigQuery" >> bigquery.ReadRows(data.bigquery, pipeline.options)
        inputs = (inputs, rows) | "FilesAndRows" >> beam.Flatten()
    read = (inputs
            | "ReadAndClean" >> beam.ParDo(ReadAndClean(data, excluded, metered))
            .with_outputs("counts", main="batches"))
    shard_counts = beam.pvalue.AsSingleton(read.counts
                                           | "CountRead" >> counts.CountAll()
                                           | "ShardCounts" >> beam.Map(shard_counts_of))
    every = (pipeline
             | "Once" >> beam.Create([None])
             | "EveryShard" >> beam.FlatMap(lambda _, n: [((split, i), []) for split in n
                                                          for i in range(n[split])],
                                            shard_counts))
    written = ((read.batches | "Reshard" >> beam.ParDo(Reshard(), shard_counts), every)
               | "AllBatches" >> beam.Flatten()
               | "GroupByShard" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShard(data, output_dir), shard_counts))
    _ = ((read.counts, written)
         | "AllCounts" >> beam.Flatten()
         | "Count" >> counts.CountAll()
         | "WriteStats" >> shards.WriteJson(
             files.join(output_dir, documents.STATS_FILE),
             lambda total: format_stats(total, data, len(sources))))
