"""ingest as a Beam pipeline: read raw records, clean them, split, write shards and stats."""

from __future__ import annotations

import apache_beam as beam
from apache_beam import coders

from components.data import cleaning, counts, layout, shards
from components.data.sources import file_format


def _read_whole_file(path: str) -> tuple[str, bytes]:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:  # decompresses .gz/.bz2 by extension
        return file_format(path), f.read()


class ReadRawRecords(beam.PTransform):
    """Files -> `(format, raw bytes)` records: a line each, or a whole file each.

    Lines are read as bytes so that invalid UTF-8 is counted as a drop, not a crash.

    Args:
        files: the matched input paths.
        txt_mode: `line` or `file` (for `.txt` inputs; JSONL is always a record per line).
    """

    def __init__(self, files: list[str], txt_mode: str):
        super().__init__()
        self.whole = [f for f in files if txt_mode == "file" and file_format(f) == "txt"]
        self.lines = [f for f in files if f not in self.whole]

    def expand(self, pbegin):
        parts = []
        if self.lines:
            parts.append(pbegin
                         | "LineFiles" >> beam.Create(self.lines)
                         | "ReadLines" >> beam.io.ReadAllFromText(coder=coders.BytesCoder(),
                                                                  with_filename=True)
                         | "TagFormat" >> beam.Map(lambda fl: (file_format(fl[0]), fl[1])))
        if self.whole:
            parts.append(pbegin
                         | "WholeFiles" >> beam.Create(self.whole)
                         | "ReadFiles" >> beam.Map(_read_whole_file))
        return parts | "Records" >> beam.Flatten()


class _CleanFn(beam.DoFn):
    def __init__(self, data):
        self.data = data

    def process(self, record):
        fmt, raw = record
        document, reason = cleaning.parse_record(raw, fmt, self.data)
        if document is None:
            yield beam.pvalue.TaggedOutput("counts", {("read",): 1, ("dropped", reason): 1})
            return
        split = cleaning.assign_split(document["text"], self.data.split_salt,
                                      self.data.eval_fraction)
        size = len(document["text"].encode("utf-8"))
        domain = document["domain"]
        yield split, document
        yield beam.pvalue.TaggedOutput("counts", {
            ("read",): 1, ("kept",): 1,
            ("split", split, "documents"): 1, ("split", split, "bytes"): size,
            ("domain", split, domain, "documents"): 1, ("domain", split, domain, "bytes"): size,
        })


class CleanDocuments(beam.PTransform):
    """`(format, raw)` records -> `(split, document)`, with a `counts` side output.

    Args:
        data: the `DataConfig`.
    """

    def __init__(self, data):
        super().__init__()
        self.data = data

    def expand(self, records):
        return records | "Clean" >> beam.ParDo(_CleanFn(self.data)).with_outputs(
            "counts", main="documents")


class WriteDocuments(beam.PTransform):
    """Documents of one split -> sorted, sharded `<split>-*.jsonl.gz` files.

    Args:
        directory: the documents artifact directory.
        split: `train` or `eval`.
        num_shards: how many files.
    """

    def __init__(self, directory: str, split: str, num_shards: int):
        super().__init__()
        self.directory = directory
        self.split = split
        self.num_shards = num_shards

    def expand(self, documents):
        return (documents
                | "Encode" >> beam.Map(lambda d: (cleaning.document_id(d["text"]),
                                                  cleaning.encode_document(d)))
                | "Write" >> shards.WriteShards(self.directory, self.split, self.num_shards,
                                                layout.DOCUMENTS_SUFFIX, shards.write_jsonl_gz))


def format_stats(total: dict, data, shard_counts: dict, num_files: int) -> dict:
    """The documents artifact's `stats.json` from the summed counts.

    Args:
        total: summed counts (tuple keys, see `_CleanFn`).
        data: the `DataConfig`.
        shard_counts: split -> number of shards.
        num_files: how many input files were read.

    Returns:
        The JSON-ready statistics.
    """
    splits = {}
    for split in layout.SPLITS:
        domains = {}
        for key, value in total.items():
            if key[0] == "domain" and key[1] == split:
                domains.setdefault(key[2], {"documents": 0, "bytes": 0})[key[3]] = value
        splits[split] = {
            "documents": total.get(("split", split, "documents"), 0),
            "bytes": total.get(("split", split, "bytes"), 0),
            "domains": domains,
            "shards": layout.shard_names(split, shard_counts[split], layout.DOCUMENTS_SUFFIX),
        }
    return {
        "format": "jsonl.gz",
        "fields": ["text", "domain", "meta"],
        "normalization": data.normalization,
        "split_salt": data.split_salt,
        "eval_fraction": data.eval_fraction,
        "input_files": num_files,
        "documents_read": total.get(("read",), 0),
        "documents_kept": total.get(("kept",), 0),
        "dropped": {reason: total.get(("dropped", reason), 0) for reason in cleaning.DROP_REASONS},
        "splits": splits,
    }


def build_ingest(pipeline, files: list[str], input_bytes: int, data, output_dir: str) -> None:
    """Add the ingest stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        files: the matched input files.
        input_bytes: their total size (sets the shard counts).
        data: the `DataConfig`.
        output_dir: the documents artifact directory.
    """
    shard_counts = {"train": shards.num_shards_for(input_bytes * (1 - data.eval_fraction)),
                    "eval": shards.num_shards_for(input_bytes * data.eval_fraction)}
    cleaned = (pipeline
               | "Read" >> ReadRawRecords(files, data.txt_mode)
               | "Clean" >> CleanDocuments(data))
    by_split = cleaned.documents | "BySplit" >> beam.Partition(
        lambda item, _: layout.SPLITS.index(item[0]), len(layout.SPLITS))
    for split, part in zip(layout.SPLITS, by_split):
        _ = (part
             | f"Drop{split.title()}Key" >> beam.Values()
             | f"Write{split.title()}" >> WriteDocuments(output_dir, split, shard_counts[split]))
    _ = (cleaned.counts
         | "Count" >> counts.CountAll()
         | "WriteStats" >> shards.WriteJson(
             layout.join(output_dir, layout.STATS_FILE),
             lambda total: format_stats(total, data, shard_counts, len(files))))
