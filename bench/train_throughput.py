"""Training throughput of the train component's real path against a PyTorch eager peer.

Prepares once (under `--work`): the demo corpus (stdlib docstrings), a SentencePiece BPE
tokenizer of `--vocab` ids and packed TFRecords of `--sequence`-token windows. Then runs,
alternately and each in a fresh process, `--pairs` times:

- ours: the trainer's `run_fn` (TFRecords -> tf.data -> model -> AdamW, then eval and
  export), with the project's default `TrainConfig` except the shape, the step budget and
  any `--train key=json` override; its steady-state tokens/s (after compilation and the
  warm-up calls, `loop.WARMUP_CALLS`) from the train summary;
- the peer: `bench/peers/nanogpt_torch.py`, nanoGPT in PyTorch eager on the CPU, same
  shape, with the peer venv's python (`make bench-peer`), at its best of 2 and 1 torch
  threads (OpenMP with 2 threads collapses when other work shares the 2 cores).

It prints every pair, the median ratio ours/peer, and the model FLOPs utilisation of both
against the best float32 matmul rate measured in this run (TensorFlow in each of our
runs, torch in each peer run). FLOPs per token (PaLM, appendix B), the same for both:
`6 N + 12 L d T`, N the weights that multiply activations (all but the token and position
tables; the untied head counts), L layers, d width, T sequence length.

    python -m bench.train_throughput [--pairs 3 --steps 40 --peer-steps 23]
        [--train jit_compile=true --train steps_per_execution=10]
        [--env TF_ENABLE_ONEDNN_OPTS=0] [--isa avx2] [--no-peer]
    python -m bench.train_throughput --what supply|eval|generate

Ours runs with the environment `lmpipe` gives TensorFlow (`pipeline.cli.tensorflow_defaults`:
oneDNN on). `--isa avx2` makes this machine stand in for an AVX2-only one: oneDNN and XLA
limited to AVX2 for ours (`ONEDNN_MAX_CPU_ISA`, `XLA_FLAGS=--xla_cpu_max_isa`; TensorFlow's
own Eigen kernels are built for AVX2 anyway), oneDNN and MKL for the peer.

`--what supply`: examples/s the training tf.data pipeline delivers with no model, against
what training consumes. `--what eval`: tokens/s of the exported SavedModel's
`score_examples` (the signature TFMA scores in the evaluate component). `--what generate`:
greedy decoding tokens/s of the trained model with its key/value cache (and without).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_PEER_PYTHON = _ROOT / ".venv-peer" / "bin" / "python"


# --- data (once per --work directory) ---

def prepare(work: Path, vocab: int, sequence: int) -> Path:
    """Corpus, tokenizer and examples under `work` (reused when already there)."""
    done = work / "prepared.json"
    if done.exists() and json.loads(done.read_text()) == {"vocab": vocab, "sequence": sequence}:
        return work
    import shutil

    from pipeline import demo_corpus

    for name in ("corpus", "tokenizer", "examples"):
        shutil.rmtree(work / name, ignore_errors=True)
    corpus = demo_corpus.build(work / "corpus")
    with open(corpus["file"], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    _tokenizer(work / "tokenizer", texts, vocab)
    _examples(work / "examples", work / "tokenizer", texts, sequence)
    done.write_text(json.dumps({"vocab": vocab, "sequence": sequence}))
    return work


def _tokenizer(directory: Path, texts: list[str], vocab_size: int) -> None:
    import sentencepiece as spm

    from pipeline.core.contracts.tokenizer import TokenizerInfo, write_info

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, character_coverage=0.9995,
        normalization_rule_name="identity", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        control_symbols=["[MASK]"], num_threads=2, minloglevel=2)
    directory.mkdir(parents=True)
    (directory / "spm.model").write_bytes(model.getvalue())
    write_info(str(directory), TokenizerInfo(
        type="bpe", vocab_size=vocab_size, model_file="spm.model", normalization="NFC",
        special_tokens={"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4}))


def _examples(directory: Path, tokenizer_dir: Path, texts: list[str], length: int) -> int:
    """Pack [bos] + ids + [eos] documents into windows; every 20th window is eval."""
    import sentencepiece as spm
    import tensorflow as tf

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "spm.model"))
    directory.mkdir(parents=True)
    writers = {split: tf.io.TFRecordWriter(str(directory / f"{split}-00000-of-00001.tfrecord"))
               for split in ("train", "eval")}
    tokens, segments, count = [], [], 0
    for ids in sp.encode(texts):
        document = [2] + ids + [3]
        while document:
            room = length - len(tokens)
            segment = segments[-1] + 1 if segments else 1
            tokens += document[:room]
            segments += [segment] * len(document[:room])
            document = document[room:]
            if len(tokens) == length:
                writers["eval" if count % 20 == 0 else "train"].write(_example(tokens, segments))
                tokens, segments, count = [], [], count + 1
    for writer in writers.values():
        writer.close()
    (directory / "feature_spec.json").write_text(json.dumps(
        {"sequence_length": length, "gzip": False}))
    return count


def _example(tokens: list[int], segments: list[int]) -> bytes:
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return tf.train.Example(features=tf.train.Features(feature={
        "token_ids": ints(tokens), "segment_ids": ints(segments),
        "num_bytes": ints([len(tokens)]),
        "domain": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"stdlib"]))}
    )).SerializeToString()


# --- one run of ours (a subprocess) ---

def _configs(args):
    from pipeline.core.config import ModelConfig, TrainConfig

    model = ModelConfig(num_layers=args.layers, hidden_dim=args.width, num_heads=args.heads,
                        intermediate_dim=args.mlp, max_sequence_length=args.sequence)
    overrides = {key: json.loads(value) for key, value in
                 (item.split("=", 1) for item in args.train)}
    train = TrainConfig(**{"steps": args.steps, "batch_size": args.batch, "warmup_steps": 10,
                           "eval_batches": 5, **overrides})
    return model, train


def run_ours(args) -> dict:
    """Train through `run_fn` in this process; what the train summary measured."""
    from components.train import flops
    from components.train.session import Paths, run_fn
    from pipeline.core.config import TaskConfig

    work = Path(args.work)
    model, train = _configs(args)
    output = Path(tempfile.mkdtemp(dir=work, prefix="model-"))
    started = time.perf_counter()
    summary = run_fn(Paths(examples=str(work / "examples"), tokenizer=str(work / "tokenizer"),
                           hyperparameters=None, output=str(output)),
                     model, TaskConfig(), train, log=lambda line: print(line, file=sys.stderr))
    result = {key: summary[key] for key in (
        "train_tokens_per_second", "compile_seconds", "warmup_seconds", "train_seconds",
        "model_flops_per_token", "parameters", "final_train_loss", "eval_loss")}
    result.update(run_fn_seconds=time.perf_counter() - started, model_dir=str(output),
                  matmul_peak_flops=flops.peak_flops("float32", None)["flops_per_second"],
                  train={k: v for k, v in summary["hyperparameters"]["train"].items()
                         if k in ("jit_compile", "steps_per_execution", "log_every")},
                  xla=summary["xla"],
                  onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  losses=_losses(output))
    return result


def _losses(output: Path) -> list[float]:
    import csv

    with open(output / "train_log.csv", encoding="utf-8") as f:
        return [float(row["loss"]) for row in csv.DictReader(f) if row.get("loss")]


# --- the comparison (parent) ---

def _child(command: list[str], env: dict) -> dict:
    done = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shape_args(args) -> list[str]:
    return [f"--{name}={getattr(args, name)}" for name in
            ("vocab", "width", "layers", "heads", "mlp", "sequence", "batch")]


# `--isa avx2`: the environment of ours and of the peer that limits them to AVX2.
_AVX2 = {"ours": {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
         "peer": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}


def compare(args) -> dict:
    """Alternate ours and the peer `args.pairs` times; print pairs, median ratio, MFU."""
    isa = _AVX2 if args.isa == "avx2" else {"ours": {}, "peer": {}}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **isa["ours"],
           **dict(item.split("=", 1) for item in args.env)}
    ours_cmd = [sys.executable, "-m", "bench.train_throughput", "--role", "ours",
                f"--work={args.work}", f"--steps={args.steps}", *_shape_args(args),
                *[f"--train={item}" for item in args.train]]
    peer_cmd = [args.peer_python, "-m", "bench.peers.nanogpt_torch",
                f"--steps={args.peer_steps}", f"--threads={args.threads}",
                *[a for a in _shape_args(args)]]
    pairs = []
    for i in range(args.pairs):
        ours = _child(ours_cmd, env)
        peer = None if args.no_peer else _child(peer_cmd, {**os.environ, **isa["peer"]})
        pair = {"ours": ours["train_tokens_per_second"],
                "peer": peer and peer["tokens_per_second"],
                "peer_by_threads": peer and peer["tokens_per_second_by_threads"],
                "ratio": peer and ours["train_tokens_per_second"] / peer["tokens_per_second"],
                "ours_compile_seconds": ours["compile_seconds"],
                "ours_run_fn_seconds": ours["run_fn_seconds"],
                "ours_final_loss": ours["final_train_loss"],
                "ours_xla": ours["xla"]["compiled"], "ours_onednn": ours["onednn"],
                "load_average": os.getloadavg()[0],
                "peer_final_loss": peer and peer["final_loss"],
                "peaks": [ours["matmul_peak_flops"]] + ([peer["matmul_peak_flops"]] if peer
                                                        else [])}
        print(f"pair {i + 1}: " + json.dumps({k: _round(v) for k, v in pair.items()}),
              flush=True)
        pairs.append((pair, ours, peer))
    return _report(args, pairs)


def _report(args, pairs) -> dict:
    per_token = pairs[0][1]["model_flops_per_token"]
    peak = max(p for pair, _, _ in pairs for p in pair["peaks"])
    ours = statistics.median(pair["ours"] for pair, _, _ in pairs)
    report = {"flops_per_token": per_token,
              "flops_formula": "6N + 12 L d T (N = non-embedding weights, untied head incl.)",
              "matmul_peak_flops": peak, "ours_tokens_per_second_median": ours,
              "ours_mfu": ours * per_token / peak,
              "ours_losses_last_run": pairs[-1][1]["losses"],
              "train": pairs[-1][1]["train"], "env": args.env, "isa": args.isa,
              "ours_best_tokens_per_second": max(pair["ours"] for pair, _, _ in pairs)}
    if not args.no_peer:
        peer = statistics.median(pair["peer"] for pair, _, _ in pairs)
        report.update(peer_tokens_per_second_median=peer, peer_mfu=peer * per_token / peak,
                      ratio_median=statistics.median(pair["ratio"] for pair, _, _ in pairs),
                      ratios=[pair["ratio"] for pair, _, _ in pairs],
                      peer_best_tokens_per_second=max(pair["peer"] for pair, _, _ in pairs))
    print(json.dumps({k: _round(v) for k, v in report.items()}, indent=1))
    return report


def _round(value):
    if isinstance(value, float):
        return round(value, 4) if abs(value) < 100 else round(value)
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


# --- supply, eval, generation ---

def supply(args) -> dict:
    """Examples/s of `data.train_dataset` with no model attached."""
    import tensorflow as tf

    from components.train import data

    work = Path(args.work)
    spec = data.read_feature_spec(str(work / "examples"))
    _, train = _configs(args)
    dataset = data.train_dataset(data.split_files(str(work / "examples"), "train"), spec,
                                 train.batch_size, train.seed, train.shuffle_buffer)
    iterator = iter(dataset)
    for _ in range(20):  # fill the shuffle buffer and the prefetch
        next(iterator)
    batches, started = 0, time.perf_counter()
    while time.perf_counter() - started < 10.0:
        tf.nest.map_structure(lambda t: t.numpy(), next(iterator))
        batches += 1
    seconds = time.perf_counter() - started
    return {"supply_examples_per_second": batches * train.batch_size / seconds,
            "supply_tokens_per_second": batches * train.batch_size * spec.sequence_length
            / seconds}


def _trained_model(args) -> str:
    """A model artifact trained here by a short `run_fn` (the export under test)."""
    ours = run_ours(argparse.Namespace(**{**vars(args), "steps": min(args.steps, 30)}))
    return ours["model_dir"]


def eval_speed(args, model_dir: str) -> dict:
    """Tokens/s of the SavedModel's `score_examples` over the eval split."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops for the load)

    from components.train import data

    loaded = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    score = loaded.signatures["score_examples"]
    files = data.split_files(str(Path(args.work) / "examples"), "eval")
    batches = list(tf.data.TFRecordDataset(files).batch(args.batch))
    score(examples=batches[0])  # trace and warm up
    tokens, started = 0, time.perf_counter()
    for batch in batches:
        tokens += int(tf.reduce_sum(score(examples=batch)["num_tokens"]))
    return {"eval_tokens_per_second": tokens / (time.perf_counter() - started),
            "eval_batch_size": args.batch, "eval_batches": len(batches)}


def generate_speed(args, model_dir: str) -> dict:
    """Greedy decoding tokens/s with and without the key/value cache (`bench.model_speed`)."""
    from bench.model_speed import generate_speed as measure
    from models.factory import load_model

    model = load_model(os.path.join(model_dir, "model.keras"))
    return measure(model, args.sequence, 4, args.sequence - 8, args.vocab)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="train", choices=["train", "supply", "eval",
                                                            "generate"])
    parser.add_argument("--role", default="compare", choices=["compare", "ours"])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(),
                                                       "lmpipe-train-throughput"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="our optimizer steps per run")
    parser.add_argument("--peer-steps", type=int, default=23,
                        help="the peer's steps per thread count (3 warm-up)")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=1024)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", default="2,1",
                        help="the peer's torch thread counts (its best one counts)")
    parser.add_argument("--train", action="append", default=[],
                        help="a TrainConfig override for ours, key=json (repeatable)")
    parser.add_argument("--env", action="append", default=[],
                        help="an environment variable for our runs, KEY=VALUE (repeatable)")
    parser.add_argument("--isa", default="native", choices=["native", "avx2"],
                        help="avx2: stand in for an AVX2-only CPU (both sides)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--model-dir", help="--what eval|generate: a model artifact trained "
                        "at this shape (default: train one for 30 steps)")
    parser.add_argument("--peer-python", default=str(_PEER_PYTHON))
    args = parser.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    prepare(Path(args.work), args.vocab, args.sequence)
    if args.role == "ours":
        print(json.dumps(run_ours(args)), flush=True)
    elif args.what == "train":
        if not args.no_peer and not Path(args.peer_python).exists():
            raise SystemExit(f"{args.peer_python} missing: run `make bench-peer` first")
        compare(args)
    elif args.what == "supply":
        print(json.dumps(supply(args)))
    else:
        model_dir = args.model_dir or _trained_model(args)
        measure = eval_speed if args.what == "eval" else generate_speed
        print(json.dumps(measure(args, model_dir)))
    return 0


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    from pipeline.cli import tensorflow_defaults

    quiet_script()
    tensorflow_defaults()  # before anything imports TensorFlow, as `lmpipe` does
    sys.exit(main())
