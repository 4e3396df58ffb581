"""Training throughput of the train component's real path on this machine.

Builds the demo corpus (stdlib docstrings), a SentencePiece tokenizer of the requested
vocabulary and packed TFRecords of the requested window, then runs the trainer's `run_fn`
(TFRecords -> tf.data -> model -> AdamW, then eval and export) and prints what it measured.

    python -m bench.train_speed --steps 60 [--vocab 4000 --width 128 --layers 2 --heads 4
        --sequence 128 --batch 32] [--jit-compile] [--precision mixed_bfloat16]
        [--steps-per-execution 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _tokenizer(directory: Path, texts: list[str], vocab_size: int) -> None:
    import sentencepiece as spm

    from models.tokenizer_info import TokenizerInfo, write_info

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
        {"sequence_length": length, "compression": "none"}))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--steps-per-execution", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from components.training.run_fn import Paths, run_fn
    from pipeline import demo_corpus
    from pipeline.config import ModelConfig, TaskConfig, TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = demo_corpus.build(root / "corpus")
        with open(corpus["file"], encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        _tokenizer(root / "tokenizer", texts, args.vocab)
        windows = _examples(root / "examples", root / "tokenizer", texts, args.sequence)
        model = ModelConfig(num_layers=args.layers, hidden_dim=args.width, num_heads=args.heads,
                            max_sequence_length=args.sequence)
        train = TrainConfig(steps=args.steps, batch_size=args.batch, learning_rate=1e-3,
                            warmup_steps=min(10, args.steps - 1), log_every=20, eval_batches=5,
                            jit_compile=args.jit_compile, precision=args.precision,
                            steps_per_execution=args.steps_per_execution)
        (root / "model").mkdir()
        started = time.perf_counter()
        paths = Paths(examples=str(root / "examples"), tokenizer=str(root / "tokenizer"),
                      hyperparameters=None, output=str(root / "model"))
        summary = run_fn(paths, model, TaskConfig(), train,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
        total = time.perf_counter() - started
    keys = ("train_tokens_per_second", "compile_seconds", "warmup_seconds", "mfu",
            "model_flops_per_token", "parameters", "final_train_loss", "eval_loss")
    print(json.dumps({"windows": windows, "jit_compile": args.jit_compile, "steps": args.steps,
                      "precision": args.precision,
                      "steps_per_execution": args.steps_per_execution,
                      "run_fn_seconds": round(total, 1),
                      **{k: summary[k] for k in keys}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
