"""Speed of the data stage (`ingest` + `transform`) against a plain Python loop.

    python -m bench.data_speed [--megabytes 100] [--pairs 3] [--max-load 1.0]
        [--beam-arg=--direct_running_mode=multi_processing --beam-arg=--direct_num_workers=2]

Setup (not timed): the corpus (`bench.data_corpus`, ~100 MB of Python source on this
machine, top-level module as domain), then `ingest` + `tokenizer` once for a SentencePiece
BPE model (vocab 4000, 10 MB sample) that both sides use.

Timed, alternately, `--pairs` times (each pair waits until the load average is below
`--max-load`: the cores are shared), each in a fresh process and measured from outside
(interpreter start and imports included on both sides):
    peer  `bench.data_peer`: read JSONL, NFC, SentencePiece encode in batches, pack,
          `tf.io.TFRecordWriter`; single process
    ours  the `ingest` and `transform` components with the given Beam options (cleaning,
          dedup, split, statistics and PNGs included); TFRecords of the same windows
Prints each pair, the load average before it, the median ratio peer/ours, MB/s, and
where the time goes: the peer's phases, our components' wall time, and both sides' CPU
seconds (the cores are shared, so wall time depends on what else runs; CPU seconds do
not). `--role breakdown`: CPU seconds per step of our work on one process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

SEQUENCE_LENGTH = 128
VOCAB_SIZE = 4000
SAMPLE_BYTES = 10_000_000
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory",)


def _runtime(root: Path, beam_args):
    from pipeline.local_runner import Runtime

    return Runtime(run_id="bench", root=str(root), beam_args=tuple(beam_args))


def _configs(corpus: Path):
    from pipeline.core.config import DataConfig, TokenizerConfig, TransformConfig

    return (DataConfig(inputs=(str(corpus),), domain_field="domain"),
            TokenizerConfig(vocab_size=VOCAB_SIZE, sample_bytes=SAMPLE_BYTES),
            TransformConfig(sequence_length=SEQUENCE_LENGTH))


def run_ours(corpus: Path, work: Path, tokenizer_dir: Path, beam_args) -> dict:
    """ingest + transform into `work`; returns their wall times."""
    from components import ingest, transform
    from pipeline.core.artifacts import Artifact
    from pipeline.core.config import TaskConfig

    data, _, transform_config = _configs(corpus)
    shutil.rmtree(work, ignore_errors=True)
    outputs = {name: work / name for name in ("documents", "golden", "examples", "statistics")}
    for path in outputs.values():
        path.mkdir(parents=True)
    runtime = _runtime(work, beam_args)
    started = time.perf_counter()
    raw = ingest.resolve_raw(SimpleNamespace(data=data), {})
    ingest.run({"raw": raw}, {name: str(outputs[name]) for name in ("documents", "golden")},
               runtime, data)
    ingested = time.perf_counter()
    transform.run({"documents": Artifact("Documents", str(outputs["documents"]), "d"),
                   "tokenizer": Artifact("Tokenizer", str(tokenizer_dir), "t")},
                  {name: str(outputs[name]) for name in ("examples", "statistics")},
                  runtime, data=data, transform=transform_config, task=TaskConfig())
    done = time.perf_counter()
    stats = json.loads((outputs["statistics"] / "stats.json").read_text())
    return {"ingest": ingested - started, "transform": done - ingested,
            "examples": stats["total"]["examples"], "tokens": stats["total"]["tokens"],
            "packing_efficiency": {s: stats["splits"][s]["packing_efficiency"]
                                   for s in ("train", "eval")}}


def setup(corpus_dir: Path, megabytes: float, work: Path) -> Path:
    """Build the corpus (if missing) and the tokenizer; returns the tokenizer directory."""
    from bench.data_corpus import build
    from components import ingest, tokenizer
    from pipeline.core.artifacts import Artifact

    if not (corpus_dir / "corpus.jsonl").exists():
        print("corpus:", json.dumps(build(corpus_dir, megabytes)), flush=True)
    tokenizer_dir = work / "tokenizer"
    if (tokenizer_dir / "tokenizer.json").exists():
        return tokenizer_dir
    data, tokenizer_config, _ = _configs(corpus_dir / "corpus.jsonl")
    documents, golden = work / "setup-documents", work / "setup-golden"
    for directory in (documents, golden):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    tokenizer_dir.mkdir(parents=True)
    runtime = _runtime(work, ("--direct_running_mode=in_memory",))
    raw = ingest.resolve_raw(SimpleNamespace(data=data), {})
    ingest.run({"raw": raw}, {"documents": str(documents), "golden": str(golden)}, runtime, data)
    tokenizer.run({"documents": Artifact("Documents", str(documents), "d")},
                  {"tokenizer": str(tokenizer_dir)}, runtime, tokenizer_config)
    return tokenizer_dir


def _timed(args: list[str]) -> tuple[float, dict]:
    """Run one side in a fresh process: wall seconds and its result, with the CPU seconds
    of the process and every process it waited for (the tokenizer workers) added."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.data_speed", *args], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_seconds": cpu}


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    """Sleep until the 1-minute load average is below `max_load` (other people share the
    cores), at most `max_wait` seconds; returns the load seen last."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def compare(corpus: Path, work: Path, tokenizer_dir: Path, beam_args, pairs: int,
            max_load: float = 1.0, max_wait: float = 1800) -> dict:
    """Alternate peer and ours `pairs` times; returns the runs and the median ratio."""
    size = corpus.stat().st_size
    runs = []
    for i in range(pairs):
        load = wait_for_quiet(max_load, max_wait)
        peer_seconds, peer = _timed(["--role", "peer", "--corpus", str(corpus),
                                     "--work", str(work), "--tokenizer", str(tokenizer_dir)])
        ours_seconds, ours = _timed(["--role", "ours", "--corpus", str(corpus), "--work",
                                     str(work), "--tokenizer", str(tokenizer_dir),
                                     *[f"--beam-arg={a}" for a in beam_args]])
        run = {"pair": i + 1, "load_before": round(load, 2), "peer_seconds": peer_seconds,
               "ours_seconds": ours_seconds, "ratio": peer_seconds / ours_seconds,
               "peer": peer, "ours": ours}
        print(json.dumps(run), flush=True)
        runs.append(run)

    def median(side, key):
        return statistics.median(r[side][key] for r in runs)

    ratio = statistics.median(r["ratio"] for r in runs)
    peer_median = statistics.median(r["peer_seconds"] for r in runs)
    ours_median = statistics.median(r["ours_seconds"] for r in runs)
    return {"corpus_mb": size / 1e6, "beam_args": list(beam_args), "pairs": pairs,
            "median_ratio": ratio, "peer_median_seconds": peer_median,
            "ours_median_seconds": ours_median, "peer_mb_per_s": size / 1e6 / peer_median,
            "ours_mb_per_s": size / 1e6 / ours_median,
            # Where the time goes (medians): the peer's phases inside its loop, our two
            # components' wall seconds, and CPU seconds of each side's processes, which
            # other users of the cores do not inflate as they do wall time.
            "peer_phases_seconds": {phase: statistics.median(r["peer"]["phases"][phase]
                                                             for r in runs)
                                    for phase in runs[0]["peer"]["phases"]},
            "ours_components_seconds": {name: median("ours", name)
                                        for name in ("ingest", "transform")},
            "cpu_seconds": {"peer": median("peer", "cpu_seconds"),
                            "ours": median("ours", "cpu_seconds")},
            "cpu_ratio": statistics.median(r["peer"]["cpu_seconds"] / r["ours"]["cpu_seconds"]
                                           for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["compare", "peer", "ours", "breakdown"],
                        default="compare")
    parser.add_argument("--corpus-dir", type=Path, default=Path("/tmp/lmpipe-bench/corpus"))
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmpipe-bench/work"))
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--tokenizer", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--beam-arg", action="append", dest="beam_args")
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait before each pair until the load average is below this")
    parser.add_argument("--max-wait", type=float, default=1800,
                        help="seconds to wait for that at most")
    args = parser.parse_args(argv)
    beam_args = tuple(args.beam_args or DEFAULT_BEAM_ARGS)
    if args.role == "peer":
        from bench.data_peer import run_peer

        model = str(args.tokenizer / "spm.model")
        print(json.dumps(run_peer(str(args.corpus), model, str(args.work / "peer.tfrecord"),
                                  SEQUENCE_LENGTH)))
        return 0
    if args.role == "ours":
        print(json.dumps(run_ours(args.corpus, args.work / "ours", args.tokenizer, beam_args)))
        return 0
    tokenizer_dir = setup(args.corpus_dir, args.megabytes, args.work)
    corpus = args.corpus_dir / "corpus.jsonl"
    if args.role == "breakdown":
        from bench.data_breakdown import breakdown

        print(json.dumps(breakdown(corpus, args.work / "breakdown", tokenizer_dir), indent=1))
        return 0
    print(json.dumps(compare(corpus, args.work, tokenizer_dir, beam_args, args.pairs,
                             args.max_load, args.max_wait), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
