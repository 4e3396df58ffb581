"""Test inputs in the producers' layouts: a tiny SentencePiece tokenizer artifact and a
packed examples artifact (`train-*`/`eval-*` TFRecords + `feature_spec.json`)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from pipeline.core.contracts.tokenizer import TokenizerInfo, write_info
from tests.conftest import tiny_documents

SEQUENCE_LENGTH = 32
VOCAB_SIZE = 384


def texts() -> list[str]:
    """The shared tiny corpus's texts."""
    return [doc["text"] for doc in tiny_documents()]


def write_tokenizer(directory: Path, vocab_size: int = VOCAB_SIZE) -> TokenizerInfo:
    """Train a byte-fallback BPE SentencePiece model and write a tokenizer artifact."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts()), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        control_symbols=["[MASK]"], num_threads=1, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spm.model").write_bytes(model.getvalue())
    info = TokenizerInfo(type="bpe", vocab_size=processor.get_piece_size(), model_file="spm.model",
                         normalization="NFC",
                         special_tokens={"pad": 0, "unk": 1, "bos": 2, "eos": 3,
                                         "mask": processor.piece_to_id("[MASK]")})
    write_info(str(directory), info)
    return info


def processor(directory: Path):
    """The Python SentencePiece processor of a tokenizer artifact (an independent path)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(directory / "spm.model"))


def pack(documents: list[list[int]], length: int, pad_id: int = 0) -> list[dict]:
    """Pack token lists into windows of `length`; a document that does not fit is cut and
    continues in the next window as a new segment."""
    windows, tokens, segments = [], [], []
    for doc in documents:
        while doc:
            if len(tokens) == length:
                windows.append((tokens, segments))
                tokens, segments = [], []
            room = length - len(tokens)
            segment = (segments[-1] + 1) if segments else 1
            tokens += doc[:room]
            segments += [segment] * len(doc[:room])
            doc = doc[room:]
    if tokens:
        windows.append((tokens, segments))
    return [{"token_ids": np.array(t + [pad_id] * (length - len(t)), np.int64),
             "segment_ids": np.array(s + [0] * (length - len(s)), np.int64)}
            for t, s in windows]


def write_examples(directory: Path, tokenizer_dir: Path, length: int = SEQUENCE_LENGTH,
                   gzip: bool = False, shards: int = 2) -> dict[str, list[dict]]:
    """Tokenize the tiny corpus, pack it and write train/eval shards (every 5th doc is eval).

    Returns:
        split -> the records written (token_ids, segment_ids, num_bytes).
    """
    import tensorflow as tf

    sp = processor(tokenizer_dir)
    docs = texts()
    split_docs = {"train": [d for i, d in enumerate(docs) if i % 5],
                  "eval": [d for i, d in enumerate(docs) if i % 5 == 0]}
    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    written = {}
    for split, split_texts in split_docs.items():
        records = pack([[2] + sp.encode(t) + [3] for t in split_texts], length)
        for record in records:
            record["num_bytes"] = int(record["segment_ids"].astype(bool).sum() * 3)
        for shard in range(shards):
            path = directory / f"{split}-{shard:05d}-of-{shards:05d}.tfrecord"
            with tf.io.TFRecordWriter(str(path), options) as writer:
                for record in records[shard::shards]:
                    writer.write(to_example(record).SerializeToString())
        written[split] = records
    (directory / "feature_spec.json").write_text(json.dumps(
        {"sequence_length": length, "gzip": gzip}))
    return written


def to_example(record: dict):
    """A record as a `tf.train.Example` in the transform component's feature contract."""
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    return tf.train.Example(features=tf.train.Features(feature={
        "token_ids": ints(record["token_ids"]),
        "segment_ids": ints(record["segment_ids"]),
        "num_bytes": ints([record.get("num_bytes", 0)]),
        "domain": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"test"])),
    }))


def reference_targets(token_ids: np.ndarray, segment_ids: np.ndarray):
    """Causal LM targets and weights computed with plain loops (independent of models/)."""
    batch, length = token_ids.shape
    targets = np.zeros_like(token_ids)
    weights = np.zeros(token_ids.shape, np.float32)
    for b in range(batch):
        for i in range(length - 1):
            if segment_ids[b, i] != 0 and segment_ids[b, i + 1] == segment_ids[b, i]:
                targets[b, i] = token_ids[b, i + 1]
                weights[b, i] = 1.0
    return targets, weights


def reference_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-position NLL (nats) with a float64 log-softmax."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def env() -> dict:
    """Environment for subprocesses that must find the project."""
    repo = Path(__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"}
