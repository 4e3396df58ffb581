"""The fine-tuning tasks' transform as a Beam pipeline: one example per document.

    documents shard i of a split -> TaskShard: read it in chunks, tokenize, frame each
        document (`task_examples`), write examples shard i of the split; count
    all counts -> statistics/stats.json

A document that cannot become an example is counted under the reason and left out:
    unlabeled       classification: no label (see `labels.label_of`)
    unknown_label   classification: a label the vocabulary (train split) does not have,
                    counted by label too (`unknown_labels`)
    missing_target  text_to_text: no string target
One DoFn call writes one shard from one shard, in the documents' order, so the output
is byte-identical whatever the runner's parallelism.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from components.ingest import cleaning
from components.shared import counts, shards
from components.transform import task_examples
from pipeline.core.contracts import examples
from components.labels import vocabulary as labels
from pipeline.core import files
from pipeline.core.contracts import documents
from components.shared.domains import slice_name
from components.transform.tokenize import load_batch_tokenizer

CHUNK_DOCUMENTS = 2048
DROP_REASONS = {"classification": ("unlabeled", "unknown_label"),
                "text_to_text": ("missing_target",)}


@dataclass(frozen=True)
class TaskSetup:
    """What every shard of a task's transform needs to know.

    Attributes:
        task_type: `classification` or `text_to_text`.
        tokenizer_dir: the tokenizer artifact.
        sequence_length: L.
        compression: `none` or `gzip`.
        length_buckets: `transform.length_buckets`.
        field: `data.label_field` or `data.target_field`.
        domain_field: `data.domain_field` (ingest keeps it as the domain).
        labels: the label vocabulary (classification).
        separator: `task.separator` (text_to_text).
        max_target_tokens: `task.max_target_tokens` (text_to_text).
        cleaning: the documents' `normalization` and `cleaning` settings, applied to targets.
        listed: the domains sliced under their own name (`domains.listed_domains`).
    """

    task_type: str
    tokenizer_dir: str
    sequence_length: int
    compression: str
    length_buckets: tuple[int, ...]
    field: str
    domain_field: str | None
    labels: tuple[str, ...] = ()
    separator: str = ""
    max_target_tokens: int = 0
    cleaning: tuple[tuple[str, str], ...] = ()
    listed: frozenset[str] | None = None


def target_of(document: dict, field: str, domain_field: str | None) -> str | None:
    """The text-to-text target of an ingested document, or None when it has no string one."""
    value = document.get("domain") if field == domain_field else (
        (document.get("meta") or {}).get(field))
    return value if isinstance(value, str) else None


def clean_target(text: str, settings: dict) -> str:
    """A target cleaned as ingest cleaned its input (control characters, Unicode, whitespace).

    Args:
        text: the raw target.
        settings: {"normalization", "control_chars", "whitespace"} of the documents.
    """
    if settings.get("control_chars", "remove") == "remove":
        text = cleaning.remove_control_chars(text)
    text = cleaning.normalize_unicode(text, settings.get("normalization", "none"))
    if settings.get("whitespace", "keep") != "keep":
        text = cleaning.normalize_whitespace(text, settings["whitespace"])
    return text


def cleaning_settings(documents_stats: dict) -> tuple[tuple[str, str], ...]:
    """The documents artifact's text cleaning, as `TaskSetup.cleaning`."""
    steps = documents_stats.get("cleaning", {})
    return (("normalization", documents_stats.get("normalization", "none")),
            ("control_chars", steps.get("control_chars", "remove")),
            ("whitespace", steps.get("whitespace", "keep")))


def read_documents(path: str, size: int = CHUNK_DOCUMENTS):
    """Yield lists of up to `size` documents of a documents shard."""
    chunk = []
    for line in shards.read_jsonl_gz_lines(path):
        chunk.append(json.loads(line))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class TaskShard(beam.DoFn):
    """Documents shard index -> its examples shard written; yields the shard's count dict.

    Args:
        setup: the `TaskSetup`.
        sources: the split's documents shard paths.
        targets: the split's examples shard paths.
        processes: how many processes tokenize (SentencePiece).
    """

    def __init__(self, setup: TaskSetup, sources: list[str], targets: list[str], processes: int):
        self.task = setup
        self.sources = sources
        self.targets = targets
        self.processes = processes
        self.buckets = examples.bucket_names(setup.length_buckets)

    def setup(self):
        self.engine, info = load_batch_tokenizer(self.task.tokenizer_dir, self.processes)
        self.bos, self.eos, self.pad = info.bos_id, info.eos_id, info.pad_id
        self.ids = labels.label_ids(list(self.task.labels))
        self.separator_ids = (self.engine.encode([self.task.separator])[0][0].astype(np.int64)
                              if self.task.task_type == "text_to_text" else None)

    def teardown(self):
        self.engine.close()

    def process(self, index: int):
        total = {("documents",): 0}
        make = (self._classification if self.task.task_type == "classification"
                else self._text_to_text)
        with shards.TFRecordFile(self.targets[index], self.task.compression) as out:
            for chunk in read_documents(self.sources[index]):
                total[("documents",)] += len(chunk)
                records = make(chunk, total)
                if records:
                    sizes = np.array([len(r) for r in records], np.int64)
                    out.write(np.frombuffer(b"".join(records), np.uint8), sizes)
        yield total

    def _domain(self, document: dict) -> str:
        return slice_name(document["domain"], self.task.listed)

    def _bucket(self, text_tokens: int) -> str:
        return self.buckets[int(examples.bucket_of(np.array([text_tokens]),
                                                   self.task.length_buckets)[0])]

    def _classification(self, chunk: list[dict], total: dict) -> list[bytes]:
        named = [(d, labels.label_of(d, self.task.field, self.task.domain_field)) for d in chunk]
        usable = []
        for document, label in named:
            if label is None:
                counts.add_counts(total, {("dropped", "unlabeled"): 1})
            elif label not in self.ids:
                counts.add_counts(total, {("dropped", "unknown_label"): 1,
                                          ("unknown_label", label): 1})
            else:
                usable.append((document, label))
        encoded = self.engine.encode([d["text"] for d, _ in usable])
        records = []
        for (document, label), (ids, token_bytes) in zip(usable, encoded):
            framed = task_examples.classification_sequence(
                ids, token_bytes, self.task.sequence_length, self.bos, self.eos, self.pad)
            records.append(task_examples.encode_example(
                {"token_ids": framed["token_ids"], "segment_ids": framed["segment_ids"],
                 "num_bytes": [framed["num_bytes"]], "label": [self.ids[label]]},
                {"domain": self._domain(document), "length_bucket": self._bucket(len(ids))}))
            self._count(total, framed, self._domain(document), framed["truncated"])
            counts.add_counts(total, {("label", label): 1})
        return records

    def _text_to_text(self, chunk: list[dict], total: dict) -> list[bytes]:
        settings = dict(self.task.cleaning)
        usable = []
        for document in chunk:
            target = target_of(document, self.task.field, self.task.domain_field)
            if target is None:
                counts.add_counts(total, {("dropped", "missing_target"): 1})
            else:
                usable.append((document, clean_target(target, settings)))
        encoded = self.engine.encode([d["text"] for d, _ in usable] + [t for _, t in usable])
        inputs, targets = encoded[:len(usable)], encoded[len(usable):]
        records = []
        for (document, target), (input_ids, input_bytes), (target_ids, target_bytes) in zip(
                usable, inputs, targets):
            framed = task_examples.text_to_text_sequence(
                input_ids, target_ids, self.separator_ids, self.task.sequence_length,
                self.task.max_target_tokens, self.bos, self.eos, self.pad)
            input_text = task_examples.covered_text(document["text"], input_bytes,
                                                    framed["input_kept"])
            target_text = task_examples.covered_text(target, target_bytes, framed["target_kept"])
            num_bytes = len(input_text.encode("utf-8")) + len(target_text.encode("utf-8"))
            records.append(task_examples.encode_example(
                {"token_ids": framed["token_ids"], "segment_ids": framed["segment_ids"],
                 "num_bytes": [num_bytes], "target_start": [framed["target_start"]]},
                {"domain": self._domain(document), "input_text": input_text,
                 "target_text": target_text,
                 "length_bucket": self._bucket(len(input_ids) + len(target_ids))}))
            cut_input = framed["input_kept"] < len(input_ids)
            cut_target = framed["target_kept"] < len(target_ids)
            self._count(total, framed, self._domain(document), cut_input or cut_target)
            counts.add_counts(total, {("truncated_input",): int(cut_input),
                                      ("truncated_target",): int(cut_target)})
        return records

    def _count(self, total: dict, framed: dict, domain: str, truncated: bool) -> None:
        counts.add_counts(total, {("examples",): 1, ("truncated",): int(truncated),
                                  ("tokens",): int(framed["segment_ids"].sum()),
                                  ("domain", domain): 1})


def summarize(total: dict, task_type: str) -> dict:
    """Statistics of one split from its counts (split-free keys)."""
    grouped: dict = {"labels": {}, "unknown_labels": {}, "domains": {}}
    names = {"label": "labels", "unknown_label": "unknown_labels", "domain": "domains"}
    for key, value in total.items():
        if key[0] in names:
            grouped[names[key[0]]][key[1]] = value
    result = {name: total.get((name,), 0) for name in ("documents", "examples", "tokens",
                                                       "truncated")}
    result["dropped"] = {reason: total.get(("dropped", reason), 0)
                         for reason in DROP_REASONS[task_type]}
    result["domains"] = dict(sorted(grouped["domains"].items()))
    if task_type == "classification":
        result["labels"] = dict(sorted(grouped["labels"].items()))
        result["unknown_labels"] = dict(sorted(grouped["unknown_labels"].items()))
    else:
        result["truncated_input"] = total.get(("truncated_input",), 0)
        result["truncated_target"] = total.get(("truncated_target",), 0)
    return result


def format_statistics(total: dict, setup: TaskSetup, documents_stats: dict) -> dict:
    """`statistics/stats.json` of a task's transform: per split, and ingest's counts."""
    splits = {split: summarize({k[1:]: v for k, v in total.items() if k[0] == split},
                               setup.task_type) for split in documents.SPLITS}
    ingest = {key: documents_stats[key] for key in ("documents_read", "documents_kept",
                                                     "dropped") if key in documents_stats}
    return {"task": setup.task_type, "sequence_length": setup.sequence_length,
            "ingest": ingest, "splits": splits}


def build_task_transform(pipeline, documents_dir: str, documents_stats: dict,
                         setup: TaskSetup, examples_dir: str, statistics_dir: str,
                         processes: int = 1) -> dict:
    """Add a task's transform stages to `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        documents_dir: the documents artifact directory.
        documents_stats: its parsed `stats.json`.
        setup: the `TaskSetup`.
        examples_dir: where to write the TFRecords.
        statistics_dir: where to write `stats.json`.
        processes: how many processes each worker tokenizes with.

    Returns:
        split -> the shard file names it will write.
    """
    names, all_counts = {}, []
    for split in documents.SPLITS:
        sources = documents.split_paths(documents_dir, documents_stats, split)
        names[split] = documents.shard_names(split, len(sources), examples.TFRECORD_SUFFIX)
        targets = [files.join(examples_dir, name) for name in names[split]]
        s = split.title()
        all_counts.append(pipeline
                          | f"{s}Shards" >> beam.Create(list(range(len(sources))))
                          | f"Distribute{s}" >> beam.Reshuffle()
                          | f"Examples{s}" >> beam.ParDo(TaskShard(setup, sources, targets,
                                                                    processes))
                          | f"Under{s}" >> beam.Map(
                              lambda c, split=split: {(split, *k): v for k, v in c.items()}))
    _ = (all_counts
         | "AllCounts" >> beam.Flatten()
         | "Count" >> counts.CountAll()
         | "WriteStatistics" >> shards.WriteJson(
             files.join(statistics_dir, documents.STATS_FILE),
             lambda total: format_statistics(total, setup, documents_stats)))
    return names
