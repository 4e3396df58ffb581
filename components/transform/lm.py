"""A language model's examples (`task.type: lm`): documents packed into windows.

    documents shard i of a split -> its examples shard i: read in chunks, tokenize, pack;
        count; hand on what is left of each group (train, `transform.mix_train_tails`)
    train leftovers of every shard -> PackLeftovers: one more train shard

The pipeline around it is the transform's (`beam.py`); this is what the language model
does in it. Shards are written in a fixed order by one call each, so the output is
byte-identical whatever the runner's parallelism.

Packing groups. Evaluation slices by domain and by document-length bucket, so an eval
window holds documents of one (domain, length bucket) only, and each group's last window
is padded. A train window holds documents of one domain too, except for the leftovers:
with `transform.mix_train_tails` each group's last partial window is not padded but
packed together with the other groups' leftovers into windows of domain `(mixed)`. The
padding this saves is up to one window per domain, per shard: a few percent on a small
corpus with many domains, nothing measurable at 100 MB and beyond. Domains beyond
`data.max_domains` are packed as one, `(other)` (`components/shared/domains.py`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter, deque
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from components.shared import counts, shards
from components.shared.domains import listed_domains, slice_name
from components.shared.example_wire import encode_examples
from components.transform import packing
from components.transform.tokenize import frame_document
from pipeline.core.config import TransformConfig
from pipeline.core.contracts import documents, examples

# Documents tokenized, packed and shuffled together; small enough that encoding the next
# chunk overlaps packing this one from early on.
CHUNK_BYTES = 4 * 2**20
# Chunks submitted to the tokenizer processes beyond the one being packed: with two, a
# process that finishes its part of a chunk early starts on the next one instead of idling
# (parts are balanced by characters, but cache hits make their cost uneven).
CHUNKS_AHEAD = 2


def read_chunks(path: str, chunk_bytes: int = CHUNK_BYTES):
    """Yield lists of documents `{"text", "domain", ...}` of about `chunk_bytes` each."""
    chunk, size = [], 0
    for line in shards.read_jsonl_gz_lines(path):
        chunk.append(json.loads(line))
        size += len(line)
        if size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def permutation(seed_text: str, size: int) -> np.ndarray:
    """A fixed shuffle of `size` items, seeded by a hash of `seed_text`."""
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng(seed).permutation(size)


def document_counts(domains: list[str], buckets: list[str], text_tokens: np.ndarray,
                    num_bytes: np.ndarray, unknown: np.ndarray) -> dict:
    """Tokenized documents' contribution to the statistics (split-free keys).

    Args:
        domains: each document's domain.
        buckets: each document's length bucket name.
        text_tokens: each document's token count without bos/eos.
        num_bytes: each document's UTF-8 size.
        unknown: each document's count of unknown tokens.
    """
    tokens = text_tokens + 2
    total = {("documents",): len(domains), ("text_tokens",): int(text_tokens.sum()),
             ("bytes",): int(num_bytes.sum()), ("unknown",): int(unknown.sum())}
    # Histogram bin k holds lengths 2**(k-1) <= n < 2**k (bin 0: n = 0).
    bins = np.array([int(n).bit_length() for n in text_tokens.tolist()], np.int64)
    for k, n in zip(*np.unique(bins, return_counts=True)):
        total[("length_bin", int(k))] = int(n)
    for kind, names in (("domain", domains), ("bucket", buckets)):
        index = {name: i for i, name in enumerate(dict.fromkeys(names))}
        ids = np.array([index[name] for name in names], np.int64)
        sums = {"documents": np.bincount(ids, minlength=len(index)),
                "tokens": np.bincount(ids, tokens, minlength=len(index))}
        if kind == "domain":
            sums["bytes"] = np.bincount(ids, num_bytes, minlength=len(index))
        for name, i in index.items():
            for measure, values in sums.items():
                total[(kind, name, measure)] = int(values[i])
    return total


def window_counts(windows: dict, domains: list[str], buckets: list[str]) -> dict:
    """Windows' contribution to the statistics (split-free keys)."""
    total = {("examples",): len(domains), ("tokens",): int((windows["segment_ids"] != 0).sum()),
             ("slots",): int(windows["segment_ids"].size)}
    for domain, n in Counter(domains).items():
        total[("domain", domain, "examples")] = n
    for bucket, n in zip(*np.unique(windows["bucket"], return_counts=True)):
        total[("bucket", buckets[int(bucket)], "examples")] = int(n)
    return total


@dataclass(frozen=True)
class LMExamples:
    """The language model's examples maker (see the module docstring).

    Attributes:
        tokenizer_dir: the tokenizer artifact directory.
        transform: the `TransformConfig`.
        pad_id: the tokenizer's pad id.
        listed: the domains packed under their own name (see `domains.listed_domains`).
    """

    tokenizer_dir: str
    transform: TransformConfig
    pad_id: int
    listed: frozenset[str] | None

    # Tagged outputs of a shard besides its counts: the train groups' leftover tokens.
    outputs = ("leftovers",)
    # The statistics artifact holds the length histogram and per-domain tokens (`plots.py`).
    draws_plots = True

    @classmethod
    def create(cls, inputs, data, transform, task, documents_stats: dict,
               pad_id: int) -> "LMExamples":
        """The maker of a run (from the arguments `run` gives every task type's)."""
        return cls(inputs["tokenizer"].uri, transform, pad_id, listed_domains(documents_stats))

    @property
    def gzip(self) -> bool:
        """Whether the shards are gzipped (`transform.gzip`)."""
        return self.transform.gzip

    def extra_shards(self, split: str) -> int:
        """One more train shard for the leftovers with `transform.mix_train_tails`."""
        return int(split == "train" and self.transform.mix_train_tails)

    def write_shard(self, engine, info, split: str, index: int, source: str, out):
        """Pack one documents shard into its examples shard.

        Args:
            engine, info: the loaded tokenizer (`tokenize.load_batch_tokenizer`).
            split: `train` or `eval`.
            index: the shard's index in the split.
            source: the documents shard's path.
            out: the examples shard (`shards.TFRecordFile`).

        Returns:
            `(counts, handed on)`: the shard's count dict and, with leftovers kept, a
            tagged `(shard, group key, packing.Tokens)` per group.
        """
        return _ShardPacking(self, engine, info, split).write(index, source, out)

    def split_steps(self, split: str, results, targets: list[str]) -> list:
        """PCollections of count dicts the split adds to its shards': the leftovers'
        shard (the split's last) when there is one."""
        if not self.extra_shards(split):
            return []
        return [results.leftovers
                | "CollectLeftovers" >> beam.combiners.ToList()
                | "PackLeftovers" >> beam.ParDo(PackLeftovers(self.transform, targets[-1],
                                                              self.pad_id))]

    def statistics(self, total: dict, documents_stats: dict) -> dict:
        """`statistics/stats.json`: per split, over all splits, and ingest's counts."""
        present = documents.SPLITS + tuple({k[0] for k in total} - set(documents.SPLITS))
        splits = {split: summarize({k[1:]: v for k, v in total.items() if k[0] == split})
                  for split in present}
        overall = {}  # the corpus's: a golden split is apart
        for key, value in total.items():
            if key[0] in documents.SPLITS:
                counts.add_counts(overall, {key[1:]: value})
        ingest = {key: documents_stats[key] for key in (
            "documents_read", "documents_kept", "dropped", "changed", "files",
            "long_documents_split") if key in documents_stats}
        return {"sequence_length": self.transform.sequence_length,
                "length_buckets": examples.bucket_names(self.transform.length_buckets),
                "ingest": ingest, "splits": splits, "total": summarize(overall)}

    def check(self, statistics: dict) -> None:
        """Nothing to refuse: a language model learns from whatever was packed."""

    def spec_entry(self) -> None:
        """No `task` entry in `feature_spec.json`: packed windows are the default."""
        return None

    def log_lines(self, statistics: dict) -> list[str]:
        """What the run reports per split."""
        lines = []
        for split, s in statistics["splits"].items():
            lines.append(f"[transform] {split}: {s['examples']} examples, {s['tokens']} tokens, "
                         f"packing efficiency {s['packing_efficiency'] or 0:.4f}")
        return lines

    def properties(self, statistics: dict) -> dict:
        """The statistics artifact's properties: packing efficiency, tokens per byte."""
        total = statistics["total"]
        return {"packing_efficiency": total["packing_efficiency"],
                "tokens_per_byte": total["tokens_per_byte"]}


class _ShardPacking:
    """One documents shard being packed: chunks encode ahead while one is packed.

    Args:
        lm: the `LMExamples`.
        engine, info: the loaded tokenizer.
        split: `train` or `eval`.
    """

    def __init__(self, lm: LMExamples, engine, info, split: str):
        self.engine = engine
        self.transform = lm.transform
        self.listed = lm.listed
        self.split = split
        self.keep_leftovers = lm.extra_shards(split) > 0
        self.buckets = examples.bucket_names(lm.transform.length_buckets)
        self.bos, self.eos, self.pad = info.bos_id, info.eos_id, info.pad_id
        self.unk = info.special_tokens["unk"]

    def write(self, index: int, source: str, out) -> tuple[dict, list]:
        packer = packing.GroupPacker(self.transform.sequence_length, self.pad)
        total, next_doc = {}, 0
        for number, (chunk, encoded) in enumerate(self._encoded_chunks(source)):
            parts = self._pack_chunk(chunk, encoded, packer, next_doc, total)
            next_doc += len(chunk)
            self._write(out, parts, f"{self.split}/{index}/{number}", total)
        leftovers = packer.remainders()
        if self.keep_leftovers:
            return total, [beam.pvalue.TaggedOutput("leftovers", (index, key, rest))
                           for key, rest in leftovers.items()]
        parts = [(packing.windows_of(rest, self.transform.sequence_length, self.pad), key[0])
                 for key, rest in leftovers.items()]
        self._write(out, parts, f"{self.split}/{index}/last", total)
        return total, []

    def _encoded_chunks(self, source: str):
        """Yield `(chunk, its encoding)`; the next chunks are encoding while one is packed."""
        pending = deque()
        for chunk in read_chunks(source):
            pending.append((chunk, self.engine.submit([d["text"] for d in chunk])))
            if len(pending) > CHUNKS_AHEAD:
                chunk, handle = pending.popleft()
                yield chunk, handle.result()
        while pending:
            chunk, handle = pending.popleft()
            yield chunk, handle.result()

    def _pack_chunk(self, chunk: list[dict], encoded: list, packer, next_doc: int,
                    total: dict) -> list:
        lengths = np.array([len(ids) for ids, _ in encoded], np.int64)
        sizes = np.array([len(d["text"].encode("utf-8")) for d in chunk], np.int64)
        buckets = examples.bucket_of(lengths, self.transform.length_buckets)
        domains = [slice_name(document["domain"], self.listed) for document in chunk]
        groups, framed = {}, []
        for i, (ids, text_bytes) in enumerate(encoded):
            framed.append(frame_document(ids, text_bytes, int(sizes[i]), self.bos, self.eos))
            key = (domains[i],) if self.keep_leftovers else (domains[i], int(buckets[i]))
            groups.setdefault(key, []).append(i)
        unknown = np.array([np.count_nonzero(ids == self.unk) for ids, _ in encoded], np.int64)
        counts.add_counts(total, document_counts(domains, [self.buckets[b] for b in buckets],
                                                 lengths, sizes, unknown))
        parts = []
        for key in sorted(groups):
            members = groups[key]
            stream = packing.documents_stream([framed[i] for i in members], next_doc,
                                              buckets[members])
            next_doc += len(members)
            parts.append((packer.add(key, stream), key[0]))
        return parts

    def _write(self, out, parts: list, seed_text: str, total: dict) -> None:
        # One encoding call for all groups of a chunk: the per-call cost of the numpy
        # encoder dominates for the many small groups of a corpus with many domains.
        parts = [(windows, domain) for windows, domain in parts if len(windows["num_bytes"])]
        if not parts:
            return
        windows = {name: np.concatenate([w[name] for w, _ in parts]) for name in parts[0][0]}
        domains = [domain for w, domain in parts for _ in range(len(w["num_bytes"]))]
        data, sizes = encode_examples(windows, domains, self.buckets)
        counts.add_counts(total, window_counts(windows, domains, self.buckets))
        out.write(data, sizes, permutation(seed_text, len(sizes)))


def leftover_domains(leftovers: list, length: int) -> list[str]:
    """The domain of each window packed from `leftovers` (`(mixed)` if several)."""
    group = np.concatenate([np.full(len(rest), i) for i, (_, key, rest) in enumerate(leftovers)])
    padded = np.pad(group, (0, -len(group) % length), mode="edge").reshape(-1, length)
    single = padded.min(axis=1) == padded.max(axis=1)
    return [leftovers[first][1][0] if one else examples.MIXED_DOMAIN
            for first, one in zip(padded[:, 0].tolist(), single.tolist())]


class PackLeftovers(beam.DoFn):
    """All train leftovers (one list) -> the last train shard; yields its count dict.

    Args:
        transform: the `TransformConfig`.
        target: the shard's path.
        pad_id: the pad id.
    """

    def __init__(self, transform, target: str, pad_id: int):
        self.transform = transform
        self.target = target
        self.pad_id = pad_id
        self.buckets = examples.bucket_names(transform.length_buckets)

    def process(self, leftovers: list):
        leftovers = sorted(leftovers, key=lambda item: (item[0], item[1]))
        length = self.transform.sequence_length
        stream = packing.renumber([rest for _, _, rest in leftovers])
        windows = packing.windows_of(stream, length, self.pad_id)
        domains = leftover_domains(leftovers, length) if leftovers else []
        data, sizes = encode_examples(windows, domains, self.buckets)
        with shards.TFRecordFile(self.target, self.transform.gzip) as out:
            out.write(data, sizes, permutation("train/leftovers", len(sizes)))
        yield window_counts(windows, domains, self.buckets)


def summarize(total: dict) -> dict:
    """Statistics of one split (or all) from counts with split-free keys.

    Returns:
        documents, examples, tokens (non-pad slots, bos/eos included), text_tokens, bytes,
        tokens_per_byte (text tokens per UTF-8 byte), packing_efficiency (non-pad slots /
        all slots), unknown_tokens, unknown_token_rate (per text token), per domain and per
        length bucket: documents, tokens, examples (and bytes per domain), and the
        document length histogram (bin k: 2**(k-1) <= text tokens < 2**k).
    """
    domains, buckets, histogram = {}, {}, {}
    for key, value in total.items():
        if key[0] == "domain":
            domains.setdefault(key[1], {"documents": 0, "examples": 0, "tokens": 0,
                                        "bytes": 0})[key[2]] = value
        elif key[0] == "bucket":
            buckets.setdefault(key[1], {"documents": 0, "examples": 0, "tokens": 0})[key[2]] = value
        elif key[0] == "length_bin":
            histogram[key[1]] = value

    def get(name):
        return total.get((name,), 0)

    return {
        "documents": get("documents"), "examples": get("examples"), "tokens": get("tokens"),
        "text_tokens": get("text_tokens"), "bytes": get("bytes"),
        "tokens_per_byte": counts.ratio(get("text_tokens"), get("bytes")),
        "packing_efficiency": counts.ratio(get("tokens"), get("slots")),
        "unknown_tokens": get("unknown"),
        "unknown_token_rate": counts.ratio(get("unknown"), get("text_tokens")),
        "domains": dict(sorted(domains.items())),
        "length_buckets": buckets,
        "length_histogram": [{"min_tokens": (1 << k) >> 1, "max_tokens": (1 << k) - 1,
                              "documents": histogram[k]} for k in sorted(histogram)],
    }


def merge_statistics(parts: list[dict]) -> dict:
    """The statistics of several data spans' examples as one (`by_span.py`): counts added
    up, ratios recomputed from the sums.

    Args:
        parts: each span's `statistics/stats.json` (`LMExamples.statistics`).

    Returns:
        The same layout over all of them.
    """
    merged = dict(parts[0])
    merged["ingest"] = functools.reduce(counts.add_up, [p["ingest"] for p in parts])
    length = merged["sequence_length"]
    merged["splits"] = {split: _merged_summary([p["splits"][split] for p in parts], length)
                        for split in parts[0]["splits"]}
    merged["total"] = _merged_summary([p["total"] for p in parts], length)
    return merged


def _merged_summary(parts: list[dict], length: int) -> dict:
    """`summarize`'s output over several parts."""
    total = functools.reduce(counts.add_up, [{k: v for k, v in p.items()
                                              if k != "length_histogram"} for p in parts])
    bins = {}
    for part in parts:
        for row in part["length_histogram"]:
            key = (row["min_tokens"], row["max_tokens"])
            bins[key] = bins.get(key, 0) + row["documents"]
    return {**total,
            "tokens_per_byte": counts.ratio(total["text_tokens"], total["bytes"]),
            "packing_efficiency": counts.ratio(total["tokens"], total["examples"] * length),
            "unknown_token_rate": counts.ratio(total["unknown_tokens"], total["text_tokens"]),
            "domains": dict(sorted(total["domains"].items())),
            "length_histogram": [{"min_tokens": low, "max_tokens": high, "documents": n}
                                 for (low, high), n in sorted(bins.items())]}
