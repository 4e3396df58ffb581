"""The fine-tuning tasks' examples (`task.type` classification, text_to_text): one example
per document, never packed.

    documents shard i of a split -> its examples shard i: read in chunks, tokenize, frame
        each document (`task_examples.py`), in the documents' order; count

The pipeline around it is the transform's (`beam.py`); this is what a task does in it.
A document that cannot become an example is counted under the reason and left out:
    unlabeled       classification: no label (see `labels.label_of`)
    unknown_label   classification: a label the vocabulary (train split) does not have,
                    counted by label too (`unknown_labels`)
    missing_target  text_to_text: no string target
Outputs, in the language model's layout: `feature_spec.json` with a `task` entry (the
batch features, the label vocabulary, the separator's ids, the budgets), and stats.json
with per split documents, examples, tokens, truncated, dropped by reason, per label, per
unknown label, per domain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from components.shared import counts, shards, text_cleaning
from components.shared.domains import listed_domains, slice_name
from components.shared.example_wire import encode_example
from components.transform import task_examples
from components.transform.tokenize import load_batch_tokenizer
from pipeline.core.contracts import documents, examples, labels
from pipeline.core.errors import UsageError

CHUNK_DOCUMENTS = 2048


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


@dataclass(frozen=True)
class _TaskExamples:
    """What the examples makers of the fine-tuning tasks share. A subclass names its
    `task_type` and `drop_reasons` and adds `create`, `records` (a chunk of documents ->
    serialized examples), `task_summary` and `task_entry`.

    Attributes:
        tokenizer_dir: the tokenizer artifact.
        sequence_length: L.
        gzip: `transform.gzip`.
        length_buckets: `transform.length_buckets`.
        domain_field: `data.domain_field` (ingest keeps it as the domain).
        listed: the domains sliced under their own name (`domains.listed_domains`).
        field: `data.label_field` or `data.target_field`.
    """

    tokenizer_dir: str
    sequence_length: int
    gzip: bool
    length_buckets: tuple[int, ...]
    domain_field: str | None
    listed: frozenset[str] | None
    field: str

    # Nothing handed on beside a shard's counts, and no pictures in the statistics.
    outputs = ()
    draws_plots = False

    @staticmethod
    def _common(inputs, transform, documents_stats: dict, data) -> dict:
        """The fields every task takes from the run."""
        return dict(tokenizer_dir=inputs["tokenizer"].uri,
                    sequence_length=transform.sequence_length,
                    gzip=transform.gzip,
                    length_buckets=tuple(transform.length_buckets),
                    domain_field=data.domain_field, listed=listed_domains(documents_stats))

    def extra_shards(self, split: str) -> int:
        """No extra shard: each documents shard gives one examples shard."""
        return 0

    def write_shard(self, engine, info, split: str, index: int, source: str, out):
        """Frame each document of one documents shard into its examples shard, in order.

        Args:
            engine, info: the loaded tokenizer (`tokenize.load_batch_tokenizer`).
            split: `train` or `eval`.
            index: the shard's index in the split.
            source: the documents shard's path.
            out: the examples shard (`shards.TFRecordFile`).

        Returns:
            `(counts, [])`: the shard's count dict, and nothing handed on.
        """
        total = {("documents",): 0}
        for chunk in read_documents(source):
            total[("documents",)] += len(chunk)
            records = self.records(chunk, engine, info, total)
            if records:
                sizes = np.array([len(r) for r in records], np.int64)
                out.write(np.frombuffer(b"".join(records), np.uint8), sizes)
        return total, []

    def split_steps(self, split: str, results, targets: list[str]) -> list:
        """Nothing beyond the shards."""
        return []

    def statistics(self, total: dict, documents_stats: dict) -> dict:
        """`statistics/stats.json` of a task's transform: per split, and ingest's counts."""
        splits = {split: self.summarize({k[1:]: v for k, v in total.items() if k[0] == split})
                  for split in documents.SPLITS}
        ingest = {key: documents_stats[key] for key in ("documents_read", "documents_kept",
                                                         "dropped") if key in documents_stats}
        return {"task": self.task_type, "sequence_length": self.sequence_length,
                "ingest": ingest, "splits": splits}

    def summarize(self, total: dict) -> dict:
        """Statistics of one split from its counts (split-free keys)."""
        result = {name: total.get((name,), 0) for name in ("documents", "examples", "tokens",
                                                           "truncated")}
        result["dropped"] = {reason: total.get(("dropped", reason), 0)
                             for reason in self.drop_reasons}
        result["domains"] = _by_name(total, "domain")
        return {**result, **self.task_summary(total)}

    def check(self, statistics: dict) -> None:
        """Raises UsageError: no example is left in a split."""
        for split in documents.SPLITS:
            s = statistics["splits"][split]
            if s["examples"] == 0:
                raise UsageError(f"task.type {self.task_type}: no {split} example is left "
                                 f"({s['documents']} documents; dropped {s['dropped']})")

    def spec_entry(self) -> dict:
        """The `task` entry of `feature_spec.json`: what the trainer and the export need."""
        return {"type": self.task_type, "field": self.field, **self.task_entry()}

    def log_lines(self, statistics: dict) -> list[str]:
        """What the run reports per split."""
        lines = []
        for split in documents.SPLITS:
            s = statistics["splits"][split]
            lines.append(f"[transform] {self.task_type} {split}: {s['examples']} examples of "
                         f"{s['documents']} documents; dropped {s['dropped']}; "
                         f"{s['truncated']} cut to the window")
        return lines

    def properties(self, statistics: dict) -> dict:
        """The statistics artifact's properties: the dropped documents per split."""
        return {split: statistics["splits"][split]["dropped"] for split in documents.SPLITS}

    def _domain(self, document: dict) -> str:
        return slice_name(document["domain"], self.listed)

    def _bucket(self, text_tokens: int) -> str:
        names = examples.bucket_names(self.length_buckets)
        return names[int(examples.bucket_of(np.array([text_tokens]), self.length_buckets)[0])]

    def _count(self, total: dict, framed: dict, domain: str, truncated: bool) -> None:
        counts.add_counts(total, {("examples",): 1, ("truncated",): int(truncated),
                                  ("tokens",): int(framed["segment_ids"].sum()),
                                  ("domain", domain): 1})


def _by_name(total: dict, kind: str) -> dict:
    """The counts keyed `(kind, name)`, by name, sorted."""
    return dict(sorted((key[1], value) for key, value in total.items() if key[0] == kind))


@dataclass(frozen=True)
class ClassificationExamples(_TaskExamples):
    """A classifier's examples maker: `[bos] + text[:L-2] + [eos]` and the label's id.

    Attributes:
        labels: the label vocabulary (id order).
    """

    labels: tuple[str, ...]

    task_type = "classification"
    drop_reasons = ("unlabeled", "unknown_label")

    @classmethod
    def create(cls, inputs, data, transform, task, documents_stats: dict,
               pad_id: int) -> "ClassificationExamples":
        """The maker of a run (from the arguments `run` gives every task type's).

        Raises:
            UsageError: the labels input is missing.
        """
        if inputs.get("labels") is None:
            raise UsageError("task.type classification: the transform needs the labels input")
        vocabulary = labels.read_vocabulary(inputs["labels"].uri)
        return cls(**cls._common(inputs, transform, documents_stats, data),
                   field=data.label_field, labels=tuple(vocabulary["labels"]))

    def records(self, chunk: list[dict], engine, info, total: dict) -> list[bytes]:
        """The serialized examples of the labeled documents of `chunk`; counts into `total`."""
        ids_of = labels.label_ids(list(self.labels))
        named = [(d, labels.label_of(d, self.field, self.domain_field)) for d in chunk]
        usable = []
        for document, label in named:
            if label is None:
                counts.add_counts(total, {("dropped", "unlabeled"): 1})
            elif label not in ids_of:
                counts.add_counts(total, {("dropped", "unknown_label"): 1,
                                          ("unknown_label", label): 1})
            else:
                usable.append((document, label))
        encoded = engine.encode([d["text"] for d, _ in usable])
        records = []
        for (document, label), (ids, token_bytes) in zip(usable, encoded):
            framed = task_examples.classification_sequence(
                ids, token_bytes, self.sequence_length, info.bos_id, info.eos_id, info.pad_id)
            records.append(encode_example(
                {"token_ids": framed["token_ids"], "segment_ids": framed["segment_ids"],
                 "num_bytes": [framed["num_bytes"]], "label": [ids_of[label]]},
                {"domain": self._domain(document), "length_bucket": self._bucket(len(ids))}))
            self._count(total, framed, self._domain(document), framed["truncated"])
            counts.add_counts(total, {("label", label): 1})
        return records

    def task_summary(self, total: dict) -> dict:
        """Per label, and per label the vocabulary does not have."""
        return {"labels": _by_name(total, "label"),
                "unknown_labels": _by_name(total, "unknown_label")}

    def task_entry(self) -> dict:
        """The label vocabulary."""
        return {"labels": list(self.labels)}


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
        text = text_cleaning.remove_control_chars(text)
    text = text_cleaning.normalize_unicode(text, settings.get("normalization", "none"))
    if settings.get("whitespace", "keep") != "keep":
        text = text_cleaning.normalize_whitespace(text, settings["whitespace"])
    return text


def cleaning_settings(documents_stats: dict) -> tuple[tuple[str, str], ...]:
    """The documents artifact's text cleaning, as `TextToTextExamples.cleaning`."""
    steps = documents_stats.get("cleaning", {})
    return (("normalization", documents_stats.get("normalization", "none")),
            ("control_chars", steps.get("control_chars", "remove")),
            ("whitespace", steps.get("whitespace", "keep")))


def encode_separator(tokenizer_dir: str, separator: str, length: int,
                     max_target_tokens: int) -> list[int]:
    """The separator's token ids, as the transform's workers would encode it.

    Raises:
        UsageError: the window has no room for an input beside them and the target.
    """
    engine, _ = load_batch_tokenizer(tokenizer_dir)
    try:
        ids = engine.encode([separator])[0][0]
    finally:
        engine.close()
    if task_examples.input_budget(length, ids, max_target_tokens) < 1:
        raise UsageError(f"transform.sequence_length {length} leaves no room for "
                         f"the input after the separator ({len(ids)} tokens) and "
                         f"task.max_target_tokens ({max_target_tokens})")
    return [int(i) for i in ids]


@dataclass(frozen=True)
class TextToTextExamples(_TaskExamples):
    """A text-to-text task's examples maker: `[bos] + input[:B] + separator + target[:T]
    + [eos]`.

    Attributes:
        separator: `task.separator`.
        separator_ids: its token ids.
        max_target_tokens: T, `task.max_target_tokens`.
        cleaning: the documents' `normalization` and `cleaning` settings, applied to targets.
    """

    separator: str
    separator_ids: tuple[int, ...]
    max_target_tokens: int
    cleaning: tuple[tuple[str, str], ...]

    task_type = "text_to_text"
    drop_reasons = ("missing_target",)

    @classmethod
    def create(cls, inputs, data, transform, task, documents_stats: dict,
               pad_id: int) -> "TextToTextExamples":
        """The maker of a run (from the arguments `run` gives every task type's).

        Raises:
            UsageError: the window has no room for an input.
        """
        ids = encode_separator(inputs["tokenizer"].uri, task.separator,
                               transform.sequence_length, task.max_target_tokens)
        return cls(**cls._common(inputs, transform, documents_stats, data),
                   field=data.target_field, separator=task.separator, separator_ids=tuple(ids),
                   max_target_tokens=task.max_target_tokens,
                   cleaning=cleaning_settings(documents_stats))

    def records(self, chunk: list[dict], engine, info, total: dict) -> list[bytes]:
        """The serialized examples of the documents of `chunk` that have a target; counts
        into `total`."""
        settings = dict(self.cleaning)
        usable = []
        for document in chunk:
            target = target_of(document, self.field, self.domain_field)
            if target is None:
                counts.add_counts(total, {("dropped", "missing_target"): 1})
            else:
                usable.append((document, clean_target(target, settings)))
        encoded = engine.encode([d["text"] for d, _ in usable] + [t for _, t in usable])
        pairs = zip(usable, encoded[:len(usable)], encoded[len(usable):])
        return [self._record(document, target, source, reply, info, total)
                for (document, target), source, reply in pairs]

    def _record(self, document: dict, target: str, source: tuple, reply: tuple, info,
                total: dict) -> bytes:
        """One example from a document and its target, each `(ids, token bytes)`."""
        (input_ids, input_bytes), (target_ids, target_bytes) = source, reply
        framed = task_examples.text_to_text_sequence(
            input_ids, target_ids, np.asarray(self.separator_ids, np.int64),
            self.sequence_length, self.max_target_tokens, info.bos_id, info.eos_id, info.pad_id)
        input_text = task_examples.covered_text(document["text"], input_bytes,
                                                framed["input_kept"])
        target_text = task_examples.covered_text(target, target_bytes, framed["target_kept"])
        num_bytes = len(input_text.encode("utf-8")) + len(target_text.encode("utf-8"))
        cut_input = framed["input_kept"] < len(input_ids)
        cut_target = framed["target_kept"] < len(target_ids)
        self._count(total, framed, self._domain(document), cut_input or cut_target)
        counts.add_counts(total, {("truncated_input",): int(cut_input),
                                  ("truncated_target",): int(cut_target)})
        return encode_example(
            {"token_ids": framed["token_ids"], "segment_ids": framed["segment_ids"],
             "num_bytes": [num_bytes], "target_start": [framed["target_start"]]},
            {"domain": self._domain(document), "input_text": input_text,
             "target_text": target_text,
             "length_bucket": self._bucket(len(input_ids) + len(target_ids))})

    def task_summary(self, total: dict) -> dict:
        """Examples whose input, or whose target, was cut to fit."""
        return {"truncated_input": total.get(("truncated_input",), 0),
                "truncated_target": total.get(("truncated_target",), 0)}

    def task_entry(self) -> dict:
        """The separator, its ids and the budgets."""
        return {"separator": self.separator, "separator_ids": list(self.separator_ids),
                "max_target_tokens": self.max_target_tokens,
                "input_budget": task_examples.input_budget(
                    self.sequence_length, self.separator_ids, self.max_target_tokens)}
