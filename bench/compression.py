"""The compression table: every export of the given models, measured on this machine.

For each model artifact (`NAME=DIR`, the train component's output) and each of its exports
(`saved_model/` float, `saved_model_int8/` in the `train.quantize` mode it was trained
with; `--add-quantized MODE` also writes and measures an int8 export in MODE, `int8` or
`int8_weights`, from its `model.keras`), in one process:

- parameters (train_summary.json) and the fraction of exactly-zero weights (pruning);
- size: all SavedModel files, its variables, and the variables gzip-compressed (what a
  pruned model's zeros save once compressed);
- eval perplexity and bits per byte over the whole eval split, from the export's
  `score_examples` signature (the sums TFMA's metrics are made of); the change in bits per
  byte against the first model's float export (the teacher, by convention);
- tokens/s of `score` on eval documents (predicted tokens per second) and of greedy
  `generate` (new tokens per second; a completion's tokens are counted by scoring it).
  Each is the median of `--repeats` timed calls after one warm-up call; the calls go
  round-robin over all exports, so load from elsewhere spreads evenly over them.

    python -m bench.compression --examples EXAMPLES_DIR --documents DOCUMENTS_DIR \\
        --model teacher=TEACHER_MODEL_DIR --model student=STUDENT_MODEL_DIR \\
        [--add-quantized int8] [--add-quantized int8_weights] [--texts 64] [--prompts 8]
        [--new-tokens 32] [--repeats 9] [--json OUT.json]

The SavedModels are loaded and called through TensorFlow alone (with tensorflow_text for
the tokenizer ops), as a server would.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import os
import statistics
import sys
import tempfile
import time



def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _eval_texts(documents_dir: str, count: int) -> list[str]:
    texts = []
    for path in sorted(glob.glob(os.path.join(documents_dir, "eval-*.jsonl*"))):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f if line.strip())
        if len(texts) >= count:
            break
    if not texts:
        raise SystemExit(f"{documents_dir}: no eval documents (eval-*.jsonl[.gz])")
    return texts[:count]


def _quantize(model_dir: str, work: str, mode: str) -> str:
    """Write an int8 export of a model artifact in `mode` (from its model.keras)."""
    from models.factory import load_model
    from models.quantize import export_int8
    from models.tokenizer import load_tokenizer

    summary = _read_json(os.path.join(model_dir, "train_summary.json"))
    tokenizer = load_tokenizer(summary["tokenizer"]["uri"])
    directory = os.path.join(work, f"{abs(hash(model_dir))}_{mode}")
    export_int8(load_model(os.path.join(model_dir, "model.keras")), tokenizer,
                summary["sequence_length"], directory, mode)
    return directory


def _zeros_fraction(saved_model: str) -> float:
    """The fraction of the stored weight values that are exactly 0 (int8 ones included)."""
    import numpy as np
    import tensorflow as tf

    prefix = os.path.join(saved_model, "variables", "variables")
    reader = tf.train.load_checkpoint(prefix)
    zeros = total = 0
    # The Keras model's weights (the exported module holds it as `model`).
    for name, _ in tf.train.list_variables(prefix):
        if name.startswith("model/"):
            value = reader.get_tensor(name)
            zeros += int(np.count_nonzero(value == 0))
            total += value.size
    return zeros / total if total else float("nan")


def _eval_sums(model, examples_dir: str, batch: int) -> dict:
    import tensorflow as tf

    from pipeline.core.contracts.examples import read_feature_spec

    files = sorted(glob.glob(os.path.join(examples_dir, "eval-*.tfrecord*")))
    wrapping = "GZIP" if read_feature_spec(examples_dir)["gzip"] else ""
    sums = {"nll": 0.0, "num_tokens": 0.0, "num_bytes": 0.0}
    signature = model.signatures["score_examples"]
    for records in tf.data.TFRecordDataset(files, compression_type=wrapping).batch(batch):
        out = signature(examples=records)
        for key in sums:
            sums[key] += float(tf.reduce_sum(tf.cast(out[key], tf.float64)))
    return sums


class _Timed:
    """One export's `score` and greedy `generate` calls, and what each call produces.

    Args:
        model: the loaded SavedModel.
        texts: eval documents to score.
        prompts: prompts to continue.
        new_tokens: tokens to generate per prompt (fewer if eos comes first).
    """

    def __init__(self, model, texts: list[str], prompts: list[str], new_tokens: int):
        import tensorflow as tf

        self.score = model.signatures["score"]
        self.generate = model.signatures["generate"]
        self.texts = tf.constant(texts)
        self.generate_args = {"prompt": tf.constant(prompts),
                              "max_new_tokens": tf.constant(new_tokens),
                              "temperature": tf.constant(0.0), "top_k": tf.constant(0),
                              "top_p": tf.constant(1.0), "seed": tf.constant(0)}
        # The first calls also trace and warm up; they are not timed.
        self.scored = float(tf.reduce_sum(self.score(text=self.texts)["num_tokens"]))
        completions = self.generate(**self.generate_args)["completion"]
        # `score` counts a text's tokens plus eos: a completion's own tokens are one fewer.
        self.generated = float(tf.reduce_sum(self.score(text=completions)["num_tokens"] - 1))
        self.seconds = {"score": [], "generate": []}

    def time_once(self) -> None:
        """Time one call of each signature."""
        started = time.perf_counter()
        self.score(text=self.texts)
        self.seconds["score"].append(time.perf_counter() - started)
        started = time.perf_counter()
        self.generate(**self.generate_args)
        self.seconds["generate"].append(time.perf_counter() - started)

    def speeds(self) -> dict:
        """Tokens/s of the median call of each signature."""
        return {"score_tokens_per_second": self.scored / statistics.median(self.seconds["score"]),
                "generate_tokens_per_second": (self.generated
                                               / statistics.median(self.seconds["generate"])),
                "generated_tokens": self.generated}


def measure(name: str, variant: str, saved_model: str, summary: dict, args) -> tuple[dict, _Timed]:
    """The untimed numbers of one row of the table, and its timed calls (`_Timed`).

    Args:
        name: the model's name on the command line.
        variant: `float`, `int8` or `int8_weights`.
        saved_model: its SavedModel directory.
        summary: the model artifact's train summary.
        args: the parsed command line.

    Returns:
        (the row without speeds, its `_Timed`).
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the tokenizer's ops)

    from models.quantize import describe_export

    model = tf.saved_model.load(saved_model)
    sums = _eval_sums(model, args.examples, args.batch)
    texts = _eval_texts(args.documents, args.texts)
    prompts = [" ".join(t.split()[:8]) for t in texts[:args.prompts]]
    mean_nll = sums["nll"] / sums["num_tokens"]
    row = {"model": name, "variant": variant, "saved_model": saved_model,
           "parameters": summary.get("parameters"), "zeros_fraction": _zeros_fraction(saved_model),
           **describe_export(saved_model), "eval_tokens": sums["num_tokens"],
           "perplexity": math.exp(mean_nll),
           "bits_per_byte": sums["nll"] / math.log(2) / sums["num_bytes"]}
    return row, _Timed(model, texts, prompts, args.new_tokens)


def _rows(args, work: str) -> list[dict]:
    measured = []
    for spec in args.model:
        name, _, model_dir = spec.partition("=")
        summary = _read_json(os.path.join(model_dir, "train_summary.json"))
        own = summary["hyperparameters"]["train"].get("quantize", "none")
        exports = [("float", os.path.join(model_dir, "saved_model"))]
        if own != "none":
            exports.append((own, os.path.join(model_dir, "saved_model_int8")))
        exports += [(mode, _quantize(model_dir, work, mode))
                    for mode in args.add_quantized if mode != own]
        for variant, path in exports:
            measured.append(measure(name, variant, path, summary, args))
            print(f"measured {name} {variant}", file=sys.stderr, flush=True)
    # Round-robin over the exports, so that load from elsewhere on the machine spreads
    # over all of them instead of falling on whichever ran at the time.
    for _ in range(args.repeats):
        for _, timed in measured:
            timed.time_once()
    rows = [{**row, **timed.speeds()} for row, timed in measured]
    reference = rows[0]["bits_per_byte"]
    for row in rows:
        row["bits_per_byte_change"] = (row["bits_per_byte"] - reference) / reference
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    header = ("| model | export | parameters | zeros | SavedModel MB | variables MB | "
              "variables gzip MB | eval ppl | bits/byte | vs first | score tok/s | "
              "generate tok/s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['parameters']:,} | {r['zeros_fraction']:.1%} | "
            f"{r['bytes'] / 1e6:.2f} | {r['variables_bytes'] / 1e6:.2f} | "
            f"{r['variables_gzip_bytes'] / 1e6:.2f} | {r['perplexity']:.2f} | "
            f"{r['bits_per_byte']:.4f} | {r['bits_per_byte_change']:+.2%} | "
            f"{r['score_tokens_per_second']:,.0f} | {r['generate_tokens_per_second']:,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", required=True, help="the examples artifact (eval split)")
    parser.add_argument("--documents", required=True, help="the documents artifact (eval texts)")
    parser.add_argument("--model", action="append", required=True, help="NAME=MODEL_DIR")
    parser.add_argument("--add-quantized", action="append", default=[],
                        choices=("int8", "int8_weights"),
                        help="also measure an int8 export in this mode")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        rows = _rows(args, work)
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    quiet_script()
    raise SystemExit(main())
