"""Generation speed of the pushed SavedModel's `generate` signature against KerasHub's
`GPT2CausalLM.generate`, alternately, each in a fresh process.

Shape (both sides): vocabulary `--vocab`, width `--width`, `--layers` layers, `--heads`
heads, MLP `--mlp`, window `--window`; random weights (speed does not depend on them). Ours
is the export exactly as the train component writes it (`models.export.save_export`, the
tokenizer inside), loaded in a fresh process with only `tensorflow` and `tensorflow_text`
and called with raw prompt strings of about `--prompt` tokens for `--new` new tokens,
sampled (`lmpipe generate`'s defaults: temperature 1, no top-k, no top-p, unless
`--temperature/--top-k/--top-p` say otherwise). KerasHub's is built from config (never
from a preset), `GPT2CausalLM(preprocessor=None)` compiled with XLA (`jit_compile=True`:
on a CPU Keras' `auto` leaves it off) and the greedy sampler, fed token ids padded to
prompt + new tokens, `stop_token_ids=None`; its key/value cache is keras-hub's own.

Each side reports its first call (tracing and compiling included; our SavedModel's load
is reported apart) and its steady rate: new tokens per second over `--calls` calls after
the first. Printed: every pair, the median ratio ours/KerasHub of both.

    python -m bench.generation_speed [--pairs 3 --calls 5 --batch 4 --prompt 32 --new 96]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _prompts(work: Path, batch: int, length: int) -> list[str]:
    """`batch` texts of the bench corpus cut to about `length` tokens (with bos)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(work / "tokenizer" / "spm.model"))
    with open(next((work / "corpus").glob("*.jsonl")), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    long_enough = [ids for ids in sp.encode(texts) if len(ids) >= length][:batch]
    return [sp.decode(ids[:length - 1]) for ids in long_enough]


def export(args) -> dict:
    """Write our SavedModel (random weights, seed 0) under `--work`, afresh: the export code
    is what is measured. Its directory."""
    import shutil

    import keras

    from models.export import save_export
    from models.factory import build_model
    from models.tokenizer import load_tokenizer
    from pipeline.core.config import ModelConfig, TaskConfig

    work = Path(args.work)
    directory = work / f"generate-{args.vocab}-{args.width}-{args.layers}-{args.window}"
    shutil.rmtree(directory, ignore_errors=True)
    keras.utils.set_random_seed(0)
    tokenizer = load_tokenizer(str(work / "tokenizer"))
    model = build_model(ModelConfig(num_layers=args.layers, hidden_dim=args.width,
                                    num_heads=args.heads, intermediate_dim=args.mlp,
                                    max_sequence_length=args.window, dropout=0.0),
                        TaskConfig(), tokenizer.info.vocab_size)
    save_export(model, tokenizer, args.window, str(directory))
    return {"saved_model": str(directory)}


def _timed_calls(call, calls: int) -> dict:
    """The first call's seconds and the steady new tokens/s of `calls` more."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    tokens, started = 0, time.perf_counter()
    for _ in range(calls):
        tokens += call()
    return {"first_call_seconds": first,
            "new_tokens_per_second": tokens / (time.perf_counter() - started),
            "new_tokens_per_call": tokens / calls}


def run_ours(args) -> dict:
    """Load the SavedModel with TensorFlow and tf-text only; time `generate`."""
    import importlib

    import tensorflow as tf

    importlib.import_module("tensorflow_text")  # registers the tokenizer's ops for the load

    started = time.perf_counter()
    generate = tf.saved_model.load(args.saved_model).signatures["generate"]
    load = time.perf_counter() - started
    prompts = tf.constant(_prompts(Path(args.work), args.batch, args.prompt))
    options = {"max_new_tokens": tf.constant(args.new), "temperature": tf.constant(
        args.temperature), "top_k": tf.constant(args.top_k), "top_p": tf.constant(args.top_p)}
    seeds = iter(range(1_000_000))

    def call():
        out = generate(prompt=prompts, seed=tf.constant(next(seeds)), **options)
        # A row that drew eos generated that token too.
        return int(tf.reduce_sum(out["new_tokens"]) + tf.reduce_sum(tf.cast(out["ended"],
                                                                           tf.int32)))

    return {"load_seconds": load, **_timed_calls(call, args.calls)}


def run_keras_hub(args) -> dict:
    """KerasHub's GPT-2 from config, random weights: time `generate` on token ids."""
    import keras_hub
    import numpy as np

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.width, intermediate_dim=args.mlp, dropout=0.0,
        max_sequence_length=args.window)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy", jit_compile=True)
    total = args.prompt + args.new
    rng = np.random.default_rng(0)
    token_ids = np.zeros((args.batch, total), np.int32)
    token_ids[:, :args.prompt] = rng.integers(0, args.vocab, (args.batch, args.prompt))
    inputs = {"token_ids": token_ids, "padding_mask": token_ids != 0}
    inputs["padding_mask"][:, :args.prompt] = True

    def call():
        out = model.generate(inputs, stop_token_ids=None)
        return int(np.sum(out["padding_mask"]) - np.sum(inputs["padding_mask"]))

    return {"jit_compile": bool(model.jit_compile), **_timed_calls(call, args.calls)}


def _child(role: str, args, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "bench.generation_speed", f"--role={role}",
               *_common_args(args), *extra]
    done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"--role={role} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _common_args(args) -> list[str]:
    return [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in (
        "work", "vocab", "width", "layers", "heads", "mlp", "window", "batch", "prompt", "new",
        "calls", "temperature", "top_k", "top_p")]


def compare(args) -> dict:
    """Alternate ours and KerasHub `args.pairs` times; print the pairs and the medians."""
    saved_model = _child("export", args, [])["saved_model"]
    pairs = []
    for i in range(args.pairs):
        ours = _child("ours", args, [f"--saved-model={saved_model}"])
        hub = _child("keras_hub", args, [])
        pair = {"ours": ours, "keras_hub": hub,
                "steady_ratio": ours["new_tokens_per_second"] / hub["new_tokens_per_second"],
                "first_call_ratio": hub["first_call_seconds"] / ours["first_call_seconds"],
                "load_average": os.getloadavg()[0]}
        print(f"pair {i + 1}: {json.dumps(_round(pair))}", flush=True)
        pairs.append(pair)
    report = {name: statistics.median(p[name] for p in pairs)
              for name in ("steady_ratio", "first_call_ratio")}
    report.update(ours_new_tokens_per_second=statistics.median(
        p["ours"]["new_tokens_per_second"] for p in pairs),
        keras_hub_new_tokens_per_second=statistics.median(
        p["keras_hub"]["new_tokens_per_second"] for p in pairs),
        note="steady_ratio: ours / KerasHub new tokens/s; first_call_ratio: KerasHub's "
             "first call seconds / ours (above 1: ours starts faster)")
    print(json.dumps(_round(report), indent=1))
    return report


def _round(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="compare",
                        choices=["compare", "export", "ours", "keras_hub"])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(),
                                                       "lmpipe-train-throughput"))
    parser.add_argument("--saved-model", help="--role ours: the SavedModel to load")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5, help="steady calls after the first")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=1024)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens (with bos)")
    parser.add_argument("--new", type=int, default=96, help="new tokens per row")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.role in ("compare", "export"):
        from bench.train_throughput import prepare

        prepare(Path(args.work), args.vocab, 128)
    roles = {"compare": compare, "export": export, "ours": run_ours, "keras_hub": run_keras_hub}
    result = roles[args.role](args)
    if args.role != "compare":
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    quiet_script()
    sys.exit(main())
