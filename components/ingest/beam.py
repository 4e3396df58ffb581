"""ingest as a Beam pipeline: read raw records, clean them, split, deduplicate, write shards.

    file ranges -> ReadAndClean -> ((split, shard), batch of documents)
                -> GroupByKey -> WriteShard (sort by id, drop duplicates, split
                   over-long documents, write one .jsonl.gz)
    counts of both stages -> stats.json

A document's shard is a function of its id (the hash of its cleaned text), so exact
duplicates meet in one shard, sorted next to each other, wherever they came from: one
shuffle does the grouping, the global deduplication and the deterministic order.
Documents travel in batches rather than one by one, which keeps Beam's per-element cost
off the hot path.
"""

from __future__ import annotations

import json

import apache_beam as beam

from components.ingest import cleaning
from components.shared import counts, progress, shards
from pipeline.core import files
from pipeline.core.contracts import documents
from components.shared.domains import fold_counts, kept_domains
from components.ingest.records import FileRange, RecordReader, compression_of, plan_ranges
from components.ingest.sources import file_format

BATCH_BYTES = 4 * 2**20
# A range's bytes read go on the progress meter in steps of this size (not per record).
PROGRESS_BYTES = 2**20
# Compressed inputs are sized at this multiple of their file size when choosing shard counts.
COMPRESSION_RATIO = 4


class ReadAndClean(beam.DoFn):
    """A file range -> `((split, shard), [(id, line, domain, bytes, chars), ...])` batches,
    and one count dict per range on the `counts` output.

    Args:
        data: the `DataConfig`.
        shard_counts: split -> number of document shards.
        golden_ids: ids of the golden eval set's documents, dropped here (reason `golden`).
        metered: where the files and bytes read are counted (`InputProgress`), or None.
    """

    def __init__(self, data, shard_counts: dict[str, int], golden_ids: frozenset = frozenset(),
                 metered: InputProgress | None = None):
        self.data = data
        self.shard_counts = shard_counts
        self.golden_ids = golden_ids
        self.metered = metered

    def setup(self):
        self.cleaner = cleaning.Cleaner(self.data)

    def process(self, file_range: FileRange):
        fmt = file_format(file_range.path)
        batches, sizes, total, records = {}, {}, {}, 0
        reader = RecordReader(file_range, self.data.txt_mode)
        read = _RangeProgress(self.metered, file_range)
        for raw in reader:
            records += 1
            read.record(raw)
            document, reason, changes = self.cleaner.clean(raw, fmt)
            if document is None:
                counts.add_counts(total, {("dropped", reason): 1})
                continue
            for change in changes:
                counts.add_counts(total, {("changed", change): 1})
            key, item = self._keyed(document)
            if item[0] in self.golden_ids:
                counts.add_counts(total, {("dropped", "golden"): 1})
                continue
            batches.setdefault(key, []).append(item)
            sizes[key] = sizes.get(key, 0) + len(item[1])
            if sizes[key] >= BATCH_BYTES:
                yield key, batches.pop(key)
                sizes[key] = 0
        yield from batches.items()
        read.done()
        counts.add_counts(total, _range_counts(file_range, reader, records))
        yield beam.pvalue.TaggedOutput("counts", total)

    def _keyed(self, document: dict) -> tuple[tuple[str, int], tuple]:
        """`((split, shard), (id, line, domain, bytes, chars))`: the split and shard come
        from the document id, the hash of its cleaned text."""
        encoded = document["text"].encode("utf-8")
        doc_id = cleaning.document_id_of_bytes(encoded)
        split = cleaning.split_of(doc_id, self.data.split_salt, self.data.eval_fraction)
        key = (split, int(doc_id[:16], 16) % self.shard_counts[split])
        return key, (doc_id, cleaning.encode_document(document), document["domain"],
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
    input's size. Record lengths estimate the bytes read of an uncompressed file only (a
    compressed file's records are larger than its bytes): a compressed file counts at its end.

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
        self.estimate = not compression_of(file_range.path)
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
    """Records read from a range, and what became of its file: counted by the file's
    first range only, as every range of a file reads or skips it alike."""
    total = {("read",): records}
    if file_range.start == 0:
        empty = records == 0 and reader.skipped is None
        total.update({("files", "read"): 1, ("files", "empty"): int(empty)})
        if reader.skipped is not None:
            total[("skipped_file", file_range.path, reader.skipped)] = 1
    if reader.error is not None:
        total[("corrupt_file", file_range.path, reader.error)] = 1
    return total


class WriteShard(beam.DoFn):
    """`((split, shard), batches)` -> one sorted, deduplicated `.jsonl.gz` file; yields
    its count dict.

    Args:
        data: the `DataConfig`.
        directory: the documents artifact directory.
        names: split -> its shard file names.
    """

    def __init__(self, data, directory: str, names: dict[str, list[str]]):
        self.data = data
        self.directory = directory
        self.names = names

    def process(self, keyed):
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
        shards.write_jsonl_gz(files.join(self.directory, self.names[split][shard]), lines)
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


def format_stats(total: dict, data, names: dict[str, list[str]], num_files: int) -> dict:
    """The documents artifact's `stats.json` from the summed counts.

    Args:
        total: summed counts (tuple keys, see `ReadAndClean` and `WriteShard`).
        data: the `DataConfig`.
        names: split -> its shard file names.
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
        "documents_read": total.get(("read",), 0),
        "documents_kept": total.get(("kept",), 0),
        "dropped": {reason: total.get(("dropped", reason), 0) for reason in cleaning.DROP_REASONS},
        "changed": {step: total.get(("changed", step), 0) for step in cleaning.CHANGES},
        "long_documents_split": total.get(("long_documents_split",), 0),
        "domains_folded": len(everywhere) - len(kept),
        "splits": splits,
    }


def shard_names(sources: list[tuple[str, int]], data) -> dict[str, list[str]]:
    """split -> its shard file names, sized from the input bytes."""
    text_bytes = sum(size * (COMPRESSION_RATIO if path.lower().endswith((".gz", ".bz2")) else 1)
                     for path, size in sources)
    fractions = {"train": 1 - data.eval_fraction, "eval": data.eval_fraction}
    return {split: documents.shard_names(split, shards.num_shards_for(text_bytes * fractions[split]),
                                      documents.DOCUMENTS_SUFFIX)
            for split in documents.SPLITS}


def build_ingest(pipeline, sources: list[tuple[str, int]], data, output_dir: str,
                 golden_ids: frozenset = frozenset(),
                 meter: progress.Meter | None = None) -> None:
    """Add the ingest stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        sources: `(path, size)` of the matched input files.
        data: the `DataConfig`.
        output_dir: the documents artifact directory.
        golden_ids: ids of the golden eval set's documents, kept out of both splits.
        meter: counts the files and bytes read (up to `InputProgress.totals`), or None.
    """
    names = shard_names(sources, data)
    shard_counts = {split: len(n) for split, n in names.items()}
    metered = InputProgress(meter, sources) if meter is not None else None
    read = (pipeline
            | "Ranges" >> beam.Create(plan_ranges(sources, data.txt_mode))
            | "Distribute" >> beam.Reshuffle()
            | "ReadAndClean" >> beam.ParDo(ReadAndClean(data, shard_counts, golden_ids, metered))
            .with_outputs("counts", main="batches"))
    every = pipeline | "EveryShard" >> beam.Create(
        [((split, i), []) for split, count in shard_counts.items() for i in range(count)])
    written = ((read.batches, every)
               | "AllBatches" >> beam.Flatten()
               | "GroupByShard" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShard(data, output_dir, names)))
    _ = ((read.counts, written)
         | "AllCounts" >> beam.Flatten()
         | "Count" >> counts.CountAll()
         | "WriteStats" >> shards.WriteJson(
             files.join(output_dir, documents.STATS_FILE),
             lambda total: format_stats(total, data, names, len(sources))))
