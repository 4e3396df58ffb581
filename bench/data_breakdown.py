"""Where the data stage's time goes: its steps run one after another in one process.

The same functions the `ingest` and `transform` DoFns call, timed step by step (CPU
seconds of this process), without Beam. The sum is the single-core work; the Beam
pipeline spreads it over the workers and adds its own overhead (startup, shuffle).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path


class _Clock:
    def __init__(self):
        self.seconds = defaultdict(float)
        self.last = time.process_time()

    def tick(self, step: str) -> None:
        now = time.process_time()
        self.seconds[step] += now - self.last
        self.last = now


def _ingest_steps(corpus: Path, work: Path, data, clock: _Clock) -> list[str]:
    from components.ingest import cleaning
    from components.shared import shards
    from components.ingest.records import FileRange, RecordReader

    cleaner = cleaning.Cleaner(data)
    items = []
    clock.tick("startup")
    for raw in RecordReader(FileRange(str(corpus)), data.txt_mode):
        clock.tick("ingest: read lines")
        document, _, _ = cleaner.clean(raw, "jsonl")
        clock.tick("ingest: parse + clean")
        if document is None:
            continue
        encoded = document["text"].encode("utf-8")
        doc_id = cleaning.document_id_of_bytes(encoded)
        cleaning.split_of(doc_id, data.split_salt, data.eval_fraction)
        clock.tick("ingest: hash + split")
        items.append((doc_id, cleaning.encode_document(document)))
        clock.tick("ingest: encode JSON")
    items.sort()
    lines = [line for i, (doc_id, line) in enumerate(items) if i == 0 or doc_id != items[i - 1][0]]
    clock.tick("ingest: sort + dedup")
    path = str(work / "documents.jsonl.gz")
    shards.write_jsonl_gz(path, lines)
    clock.tick("ingest: write jsonl.gz")
    return [path]


def _transform_steps(paths: list[str], work: Path, tokenizer_dir: Path, transform,
                     clock: _Clock) -> None:
    import numpy as np

    from components.shared import shards
    from components.shared.example_wire import encode_examples
    from components.transform import packing
    from components.transform.lm import read_chunks
    from components.transform.tokenize import frame_document, load_batch_tokenizer
    from pipeline.core.contracts import examples

    engine, info = load_batch_tokenizer(str(tokenizer_dir))
    packer = packing.GroupPacker(transform.sequence_length, info.pad_id)
    names = examples.bucket_names(transform.length_buckets)
    clock.tick("startup")
    with shards.TFRecordFile(str(work / "examples.tfrecord"), gzip=False) as out:
        for chunk in read_chunks(paths[0]):
            clock.tick("transform: read + parse JSON")
            texts = [d["text"] for d in chunk]
            encoded = engine.encode(texts)
            clock.tick("transform: tokenize")
            framed = [frame_document(ids, b, len(t.encode("utf-8")), info.bos_id, info.eos_id)
                      for t, (ids, b) in zip(texts, encoded)]
            groups = {}
            for i, document in enumerate(chunk):
                groups.setdefault(document["domain"], []).append(i)
            parts, first = [], 0
            for key in sorted(groups):
                members = groups[key]
                stream = packing.documents_stream([framed[i] for i in members], first,
                                                  np.zeros(len(members), np.int64))
                first += len(members)
                parts.append((packer.add(key, stream), key))
            clock.tick("transform: frame + pack")
            encoded = [encode_examples(windows, [domain] * len(windows["num_bytes"]), names)
                       for windows, domain in parts]
            clock.tick("transform: serialize Examples")
            out.write(np.concatenate([data for data, _ in encoded]),
                      np.concatenate([sizes for _, sizes in encoded]))
            clock.tick("transform: TFRecord frame + write")


def breakdown(corpus: Path, work: Path, tokenizer_dir: Path) -> dict:
    """CPU seconds per step of ingest and transform on `corpus`, in this process."""
    from pipeline.core.config import DataConfig, TransformConfig

    work.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    data = DataConfig(inputs=(str(corpus),), domain_field="domain")
    paths = _ingest_steps(corpus, work, data, clock)
    _transform_steps(paths, work, tokenizer_dir, TransformConfig(sequence_length=128), clock)
    total = sum(clock.seconds.values())
    return {"cpu_seconds": {k: round(v, 2) for k, v in clock.seconds.items()},
            "total_cpu_seconds": round(total, 2),
            "corpus_mb": corpus.stat().st_size / 1e6}
