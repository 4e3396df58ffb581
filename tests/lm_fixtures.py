"""A hand-built language model and eval examples that honour the producers' contracts.

`write_bigram_model` exports a SavedModel with the trainer's signatures (`score`,
`score_examples`, `generate`) over a fixed bigram log-probability table, so tests can
compute every expected metric by hand in NumPy (`reference_sums`) and check that the
evaluation pipeline reproduces it. `write_examples` writes an examples artifact in the
transform component's layout.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from pipeline.core.artifacts import Artifact

VOCAB = 8
# Letters h..o: their code points are 0..7 modulo VOCAB, so the text a model generates
# maps back to the very ids it chose (as a real tokenizer round-trips its own output).
FIRST_LETTER = ord("h")


def bigram_table(seed: int, sharpness: float = 2.0) -> np.ndarray:
    """Log-probabilities [prev, next] of a random bigram model (rows sum to 1 in prob)."""
    logits = np.random.default_rng(seed).normal(size=(VOCAB, VOCAB)) * sharpness
    logits -= logits.max(axis=1, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)


def _target_mask(segment_ids):
    """Positions predicted from their left neighbour within the same document."""
    import tensorflow as tf

    same = tf.equal(segment_ids[:, 1:], segment_ids[:, :-1])
    return tf.logical_and(same, tf.not_equal(segment_ids[:, 1:], 0))


def _build_module(table: np.ndarray, sequence_length: int):
    import tensorflow as tf

    from models.export import GENERATE_SIGNATURE  # what `lmpipe generate` calls

    class BigramLM(tf.Module):
        def __init__(self):
            super().__init__()
            self.logp = tf.Variable(table, trainable=False)

        def _pair_stats(self, prev, nxt, mask):
            logp = tf.gather_nd(self.logp, tf.stack([prev, nxt], axis=-1))
            best = tf.argmax(tf.gather(self.logp, prev), axis=-1)
            maskf = tf.cast(mask, tf.float32)
            nll = -tf.reduce_sum(logp * maskf, axis=1)
            correct = tf.reduce_sum(tf.cast(tf.logical_and(tf.equal(best, nxt), mask), tf.int64), 1)
            return nll, tf.reduce_sum(tf.cast(mask, tf.int64), axis=1), correct

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def score_examples(self, examples):
            spec = {
                "token_ids": tf.io.FixedLenFeature([sequence_length], tf.int64),
                "segment_ids": tf.io.FixedLenFeature([sequence_length], tf.int64),
                "num_bytes": tf.io.FixedLenFeature([1], tf.int64),
            }
            parsed = tf.io.parse_example(examples, spec)
            tokens, segments = parsed["token_ids"], parsed["segment_ids"]
            nll, count, correct = self._pair_stats(tokens[:, :-1], tokens[:, 1:],
                                                   _target_mask(segments))
            return {"nll": nll, "num_tokens": count, "num_correct": correct,
                    "num_bytes": parsed["num_bytes"][:, 0]}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def score(self, text):
            ids = tf.strings.unicode_decode(text, "UTF-8") % VOCAB
            padded = tf.cast(ids.to_tensor(default_value=-1), tf.int64)
            mask = tf.logical_and(padded[:, 1:] >= 0, padded[:, :-1] >= 0)
            safe = tf.maximum(padded, 0)
            nll, count, _ = self._pair_stats(safe[:, :-1], safe[:, 1:], mask)
            return {"nll": nll, "num_tokens": count,
                    "num_bytes": tf.cast(tf.strings.length(text), tf.int64)}

        @tf.function(input_signature=GENERATE_SIGNATURE)
        def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
            ids = tf.cast(tf.strings.unicode_decode(prompt, "UTF-8") % VOCAB, tf.int64)
            # A leading 0 gives an empty prompt a last token; then take each row's last id.
            start = tf.RaggedTensor.from_tensor(tf.zeros([tf.shape(prompt)[0], 1], tf.int64))
            ids = tf.concat([start, ids], axis=1)
            last = tf.gather(ids.flat_values, ids.row_limits() - 1)
            # Like the real export, the draw at position i uses the seed (seed, i).
            start = tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32)
            out = tf.TensorArray(tf.int64, size=max_new_tokens)
            for step in tf.range(max_new_tokens):
                logits = tf.gather(self.logp, last)
                if temperature > 0.0:
                    draw = tf.random.stateless_categorical(logits / temperature, 1,
                                                           seed=tf.stack([seed, start + step]))
                    last = draw[:, 0]
                else:
                    last = tf.argmax(logits, axis=-1)
                out = out.write(step, last)
            letters = tf.transpose(out.stack()) + FIRST_LETTER
            letters = tf.reshape(letters, [tf.shape(prompt)[0], -1])
            return {"completion": tf.strings.unicode_encode(tf.cast(letters, tf.int32), "UTF-8")}

    return BigramLM()


def write_bigram_model(directory: Path, *, seed: int, sequence_length: int,
                       sharpness: float = 2.0) -> np.ndarray:
    """Export the bigram model as a model artifact (`saved_model/`, `train_summary.json`).

    Args:
        directory: the model artifact directory (created).
        seed: picks the bigram table.
        sequence_length: the examples' fixed length.
        sharpness: scale of the logits; on uniformly random tokens a flatter model
            (smaller sharpness) has the lower perplexity.

    Returns:
        The log-probability table the model uses.
    """
    import tensorflow as tf

    table = bigram_table(seed, sharpness)
    module = _build_module(table, sequence_length)
    directory.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(directory / "saved_model"), signatures={
        "score": module.score, "score_examples": module.score_examples,
        "generate": module.generate})
    (directory / "train_summary.json").write_text(json.dumps({"seed": seed, "sharpness": sharpness}))
    return table


def make_records(count: int, sequence_length: int, seed: int,
                 domains: tuple[str, ...] = ("math", "os", "json")) -> list[dict]:
    """Random packed examples: 1-2 documents each, a padded tail, varying byte counts."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        length = int(rng.integers(2, sequence_length + 1))
        cut = int(rng.integers(1, length)) if length > 3 else length
        segments = np.zeros(sequence_length, np.int64)
        segments[:cut] = 1
        segments[cut:length] = 2
        records.append({
            "token_ids": np.where(segments > 0, rng.integers(0, VOCAB, sequence_length), 0),
            "segment_ids": segments,
            "num_bytes": int(rng.integers(length, 4 * length + 1)),
            "domain": domains[i % len(domains)],
        })
    return records


def write_examples(directory: Path, records: list[dict], sequence_length: int, *,
                   gzip: bool = False, shards: int = 2) -> None:
    """Write records as `eval-*.tfrecord` shards plus `feature_spec.json`.

    Records with a `length_bucket` (as the transform writes since format 2) carry it as a
    feature; records without one are examples of the older format.
    """
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    for shard in range(shards):
        path = directory / f"eval-{shard:05d}-of-{shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(path), options) as writer:
            for record in records[shard::shards]:
                writer.write(_to_example(record).SerializeToString())
    features = {"token_ids": {"dtype": "int64", "shape": [sequence_length]},
                "segment_ids": {"dtype": "int64", "shape": [sequence_length]},
                "num_bytes": {"dtype": "int64", "shape": [1]},
                "domain": {"dtype": "string", "shape": [1]}}
    if "length_bucket" in records[0]:
        features["length_bucket"] = {"dtype": "string", "shape": [1]}
    (directory / "feature_spec.json").write_text(json.dumps(
        {"sequence_length": sequence_length, "gzip": gzip, "features": features}))


def _to_example(record: dict):
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(map(int, values))))

    def text(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    feature = {"token_ids": ints(record["token_ids"]), "segment_ids": ints(record["segment_ids"]),
               "num_bytes": ints([record["num_bytes"]]), "domain": text(record["domain"])}
    if "length_bucket" in record:
        feature["length_bucket"] = text(record["length_bucket"])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def reference_sums(table: np.ndarray, records: list[dict]) -> dict:
    """Per-metric sums computed directly in NumPy (no TensorFlow)."""
    nll = tokens = correct = num_bytes = 0.0
    for record in records:
        ids, seg = record["token_ids"], record["segment_ids"]
        for i in range(1, len(ids)):
            if seg[i] != 0 and seg[i] == seg[i - 1]:
                nll -= float(table[ids[i - 1], ids[i]])
                tokens += 1
                correct += int(np.argmax(table[ids[i - 1]]) == ids[i])
        num_bytes += record["num_bytes"]
    return {"nll": nll, "tokens": tokens, "correct": correct, "bytes": num_bytes,
            "examples": len(records)}


def unigram_perplexity(records: list[dict]) -> float:
    """exp(entropy) of the target tokens' own frequencies, counted in plain Python."""
    counts: dict[int, int] = {}
    for record in records:
        ids, seg = record["token_ids"], record["segment_ids"]
        for i in range(1, len(ids)):
            if seg[i] != 0 and seg[i] == seg[i - 1]:
                counts[int(ids[i])] = counts.get(int(ids[i]), 0) + 1
    total = sum(counts.values())
    return math.exp(-sum(c / total * math.log(c / total) for c in counts.values()))


def reference_metrics(table: np.ndarray, records: list[dict]) -> dict:
    """The evaluation metrics of the bigram model on `records`, computed in NumPy."""
    sums = reference_sums(table, records)
    mean_nll = sums["nll"] / sums["tokens"]
    return {"mean_nll": mean_nll, "perplexity": math.exp(mean_nll),
            "unigram_perplexity": unigram_perplexity(records),
            "bits_per_byte": sums["nll"] / math.log(2) / sums["bytes"],
            "token_accuracy": sums["correct"] / sums["tokens"],
            "example_count": sums["examples"], "token_count": sums["tokens"]}


def artifact(kind: str, directory: Path, fingerprint: str) -> Artifact:
    """An input artifact as the runner would hand it to a component."""
    return Artifact(type=kind, uri=os.fspath(directory), fingerprint=fingerprint)


def greedy_completion(table: np.ndarray, prompt: str, max_new_tokens: int) -> str:
    """What the bigram model's `generate` returns at temperature 0, computed in NumPy."""
    last = ord(prompt[-1]) % VOCAB if prompt else 0
    letters = []
    for _ in range(max_new_tokens):
        last = int(np.argmax(table[last]))
        letters.append(chr(FIRST_LETTER + last))
    return "".join(letters)


def write_documents(directory: Path, eval_documents: list[dict]) -> None:
    """A documents artifact in the ingest layout holding `eval_documents` ({"text", "domain"})."""
    import gzip

    directory.mkdir(parents=True, exist_ok=True)
    name = "eval-00000-of-00001.jsonl.gz"
    lines = "".join(json.dumps({"text": d["text"], "domain": d["domain"], "meta": {}}) + "\n"
                    for d in eval_documents)
    (directory / name).write_bytes(gzip.compress(lines.encode("utf-8"), mtime=0))
    (directory / "stats.json").write_text(json.dumps(
        {"splits": {"train": {"shards": []}, "eval": {"shards": [name]}}}))


def longest_span(segment_ids) -> int:
    """The most tokens any one document has in a window (a plain-Python count)."""
    ids = [int(s) for s in segment_ids if s]
    return max(ids.count(s) for s in set(ids)) if ids else 0
