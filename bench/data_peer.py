"""The data benchmark's peer: a plain single-process Python loop doing the data stage's core work.

Read JSONL, NFC-normalize, encode with the SentencePiece Python library in batches, pack
`[bos] + ids + [eos]` documents into windows of `sequence_length` (segment ids, byte counts,
padding), and write `tf.train.Example`s with `tf.io.TFRecordWriter`. No deduplication, no
split, no statistics, no domains kept apart: the least work that yields trainable records.
"""

from __future__ import annotations

import json
import time
import unicodedata

import numpy as np

BATCH = 256


def run_peer(corpus: str, spm_model: str, output: str, sequence_length: int) -> dict:
    """Run the loop and return its timings.

    Args:
        corpus: a JSONL file with a `text` field.
        spm_model: a SentencePiece model file.
        output: the TFRecord file to write.
        sequence_length: the window length.

    Returns:
        {"seconds", "phases": {name: seconds}, "windows", "tokens"}.
    """
    import sentencepiece as spm
    import tensorflow as tf

    started = time.perf_counter()
    phases = dict.fromkeys(("read", "normalize", "encode", "pack", "write"), 0.0)
    processor = spm.SentencePieceProcessor(model_file=spm_model)
    bos, eos, pad = processor.bos_id(), processor.eos_id(), processor.pad_id()
    # UTF-8 bytes each piece stands for ("▁" is a space; byte-fallback pieces are one byte).
    piece_bytes = np.array([1 if processor.is_byte(i) else
                            0 if processor.is_control(i) else
                            len(processor.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
                            for i in range(processor.get_piece_size())])
    stream, segments, texts = [], [], []
    state = {"windows": 0, "tokens": 0, "segment": 0}

    def tick(name, since):
        now = time.perf_counter()
        phases[name] += now - since
        return now

    with tf.io.TFRecordWriter(output) as writer, open(corpus, encoding="utf-8") as f:
        def flush(final: bool):
            t = time.perf_counter()
            for ids in processor.encode(texts):
                state["segment"] += 1
                stream.extend([bos, *ids, eos])
                segments.extend([state["segment"]] * (len(ids) + 2))
            texts.clear()
            t = tick("encode", t)
            start = 0
            while len(stream) - start >= sequence_length or (final and start < len(stream)):
                tokens = stream[start:start + sequence_length]
                segs = segments[start:start + sequence_length]
                start += sequence_length
                pad_count = sequence_length - len(tokens)
                first = segs[0] - 1
                feature = {
                    "token_ids": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=tokens + [pad] * pad_count)),
                    "segment_ids": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[s - first for s in segs] + [0] * pad_count)),
                    "num_bytes": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[int(piece_bytes[tokens].sum())])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                t = tick("pack", t)
                writer.write(example.SerializeToString())
                t = tick("write", t)
                state["windows"] += 1
                state["tokens"] += len(tokens)
            del stream[:start], segments[:start]

        t = time.perf_counter()
        for line in f:
            text = json.loads(line)["text"]
            t = tick("read", t)
            texts.append(unicodedata.normalize("NFC", text))
            t = tick("normalize", t)
            if len(texts) == BATCH:
                flush(False)
                t = time.perf_counter()
        flush(True)
    return {"seconds": time.perf_counter() - started, "phases": phases,
            "windows": state["windows"], "tokens": state["tokens"]}
