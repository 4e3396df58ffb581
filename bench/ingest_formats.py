"""Speed of `ingest` on one corpus written as JSONL, Parquet and TFRecord.

    python -m bench.ingest_formats [--megabytes 100] [--pairs 3] [--max-load 1.0]
        [--beam-arg=--direct_running_mode=multi_processing --beam-arg=--direct_num_workers=2]

Setup (not timed): the data benchmark's corpus (`bench.data_corpus`: ~100 MB of Python
source on this machine, one record per file: text, domain, path), written three ways
with the same records: `corpus.jsonl`; `corpus.parquet` (pyarrow's defaults, as
`pandas.DataFrame.to_parquet` writes: snappy, row groups of up to 1M rows);
`corpus.tfrecord` (a tf.train.Example per record, every field a bytes feature).

Timed, alternately (the order rotates each round, and each round waits until the load
average is below `--max-load`: the cores are shared), `--pairs` rounds: the `ingest`
component on each file, in a fresh process measured from outside (interpreter start and
imports included), with its CPU seconds. Prints each round, then per format the median
wall and CPU seconds and the median ratio JSONL/format (above 1: the format is faster),
and whether the three documents artifacts are byte-identical (they must be). Then the
part that differs between the formats alone, in this process, alternately: reading every
record (`RecordReader`) and cleaning it into a document (`Cleaner`), CPU seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

FORMATS = ("jsonl", "parquet", "tfrecord")
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory",)


def write_formats(corpus_dir: Path, megabytes: float) -> dict[str, Path]:
    """The corpus as JSONL (built if missing), Parquet and TFRecord; format -> file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.data_corpus import build
    from components.shared.example_wire import encode_example

    paths = {fmt: corpus_dir / f"corpus.{fmt}" for fmt in FORMATS}
    if not paths["jsonl"].exists():
        print("corpus:", json.dumps(build(corpus_dir, megabytes)), flush=True)
    if all(path.exists() for path in paths.values()):
        return paths
    with open(paths["jsonl"], encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    pq.write_table(pa.Table.from_pylist(records), paths["parquet"])
    _write_tfrecord(paths["tfrecord"], [encode_example({}, r) for r in records])
    return paths


def _write_tfrecord(path: Path, records: list[bytes]) -> None:
    import numpy as np

    from components.shared.shards import TFRecordFile

    sizes = np.array([len(r) for r in records], np.int64)
    with TFRecordFile(str(path), gzip=False) as out:
        out.write(np.frombuffer(b"".join(records), np.uint8), sizes)


def run_ingest(path: Path, work: Path, beam_args) -> dict:
    """`ingest` of one file into `work/<format>`; its wall seconds and counts."""
    from components import ingest
    from pipeline.core.config import DataConfig
    from pipeline.local_runner import Runtime

    out = work / path.suffix.lstrip(".")
    shutil.rmtree(out, ignore_errors=True)
    outputs = {"documents": out / "documents", "golden": out / "golden"}
    for directory in outputs.values():
        directory.mkdir(parents=True)
    data = DataConfig(inputs=(str(path),), domain_field="domain")
    started = time.perf_counter()
    raw = ingest.resolve_raw(SimpleNamespace(data=data), {})
    properties = ingest.run({"raw": raw}, {k: str(v) for k, v in outputs.items()},
                            Runtime(run_id="bench", root=str(work), beam_args=tuple(beam_args)),
                            data)
    return {"ingest_seconds": time.perf_counter() - started, **properties["documents"],
            "documents_sha256": _tree_digest(outputs["documents"])}


def _tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _timed(path: Path, work: Path, beam_args) -> tuple[float, dict]:
    """One ingest in a fresh process: wall seconds, its result and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.ingest_formats", "--role", "ingest",
                           "--input", str(path), "--work", str(work),
                           *[f"--beam-arg={a}" for a in beam_args]],
                          check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_seconds": cpu}


def read_and_clean(paths: dict[str, Path], rounds: int) -> dict:
    """Median CPU seconds per format to read every record and clean it (no Beam)."""
    from components.ingest.cleaning import Cleaner
    from components.ingest.records import FileRange, RecordReader
    from pipeline.core.config import DataConfig

    cleaner = Cleaner(DataConfig(inputs=("-",), domain_field="domain"))
    seconds = {fmt: [] for fmt in FORMATS}
    for i in range(rounds):
        for fmt in FORMATS[i % len(FORMATS):] + FORMATS[:i % len(FORMATS)]:
            started = time.process_time()
            for record in RecordReader(FileRange(str(paths[fmt])), "line"):
                cleaner.clean(record, fmt)
            seconds[fmt].append(time.process_time() - started)
    return {fmt: statistics.median(values) for fmt, values in seconds.items()}


def compare(paths: dict[str, Path], work: Path, beam_args, pairs: int, max_load: float,
            max_wait: float) -> dict:
    """Ingest each format in turn, `pairs` rounds; the medians and ratios to JSONL."""
    from bench.data_speed import wait_for_quiet

    rounds = []
    for i in range(pairs):
        load = wait_for_quiet(max_load, max_wait)
        order = FORMATS[i % len(FORMATS):] + FORMATS[:i % len(FORMATS)]
        run = {"round": i + 1, "load_before": round(load, 2), "order": list(order)}
        for fmt in order:
            seconds, result = _timed(paths[fmt], work, beam_args)
            run[fmt] = {"seconds": seconds, **result}
        print(json.dumps(run), flush=True)
        rounds.append(run)

    def median(fmt, key):
        return statistics.median(r[fmt][key] for r in rounds)

    return {
        "megabytes": {fmt: paths[fmt].stat().st_size / 1e6 for fmt in FORMATS},
        "beam_args": list(beam_args), "rounds": pairs,
        "median_seconds": {fmt: median(fmt, "seconds") for fmt in FORMATS},
        "median_ingest_seconds": {fmt: median(fmt, "ingest_seconds") for fmt in FORMATS},
        "median_cpu_seconds": {fmt: median(fmt, "cpu_seconds") for fmt in FORMATS},
        # Above 1: the format ingests faster than JSONL (per round, then the median).
        "median_ratio_jsonl_over": {
            fmt: statistics.median(r["jsonl"]["seconds"] / r[fmt]["seconds"] for r in rounds)
            for fmt in FORMATS[1:]},
        "median_cpu_ratio_jsonl_over": {
            fmt: statistics.median(r["jsonl"]["cpu_seconds"] / r[fmt]["cpu_seconds"]
                                   for r in rounds)
            for fmt in FORMATS[1:]},
        "documents_identical": len({r[fmt]["documents_sha256"] for r in rounds
                                    for fmt in FORMATS}) == 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["compare", "ingest"], default="compare")
    parser.add_argument("--corpus-dir", type=Path, default=Path("/tmp/lmpipe-bench/corpus"))
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmpipe-bench/formats"))
    parser.add_argument("--input", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--beam-arg", action="append", dest="beam_args")
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait before each round until the load average is below this")
    parser.add_argument("--max-wait", type=float, default=1800,
                        help="seconds to wait for that at most")
    args = parser.parse_args(argv)
    beam_args = tuple(args.beam_args or DEFAULT_BEAM_ARGS)
    if args.role == "ingest":
        print(json.dumps(run_ingest(args.input, args.work, beam_args)))
        return 0
    paths = write_formats(args.corpus_dir, args.megabytes)
    print(json.dumps(compare(paths, args.work, beam_args, args.pairs, args.max_load,
                             args.max_wait), indent=1))
    print(json.dumps({"read_and_clean_cpu_seconds": read_and_clean(paths, args.pairs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
