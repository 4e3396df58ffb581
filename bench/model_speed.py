"""Per-family model throughput on this machine: training steps and greedy generation.

Builds each family from config at one shape and times, on synthetic packed windows,
(1) a training step as the trainer takes it (objective -> forward -> summed token NLL ->
gradient -> AdamW), compiled with tf.function (XLA optional), steady state after warm-up;
(2) for causal families, greedy generation of `--new` tokens after an 8-token prompt,
with the key/value cache (the export's scheme: one token per step) and without it (the
whole window re-run per token).

    python -m bench.model_speed [--families gpt llama bert] [--vocab 8192 --width 256
        --layers 4 --heads 4 --kv-heads 1 --sequence 128 --batch 16 --steps 30 --new 64]
        [--jit-compile]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

_WARMUP = 3
_SPECIALS = {"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4}


def _batch(rng, batch, length, vocab):
    """Windows of four documents each, the last one padded at the end."""
    import numpy as np

    segments = np.repeat(np.arange(1, 5), length // 4)[None, :].repeat(batch, 0).astype(np.int32)
    segments[:, -length // 8:] = 0
    tokens = np.where(segments > 0, rng.integers(5, vocab, (batch, length)), 0).astype(np.int32)
    return {"token_ids": tokens, "segment_ids": segments}


def _train_speed(model, objective, batch, steps, jit_compile):
    import keras
    import tensorflow as tf

    from models.objectives import token_nll

    optimizer = keras.optimizers.AdamW(learning_rate=1e-4)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def step(batch, seed):
        inputs, targets, weights = objective.prepare(batch, seed)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(token_nll(model(inputs, training=True), targets) * weights)
            loss = loss / tf.maximum(tf.reduce_sum(weights), 1.0)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
        return loss

    batch = {k: tf.constant(v) for k, v in batch.items()}
    times = []
    for i in range(steps):
        started = time.perf_counter()
        float(step(batch, tf.constant([0, i], tf.int32)))
        times.append(time.perf_counter() - started)
    tokens = int(batch["token_ids"].shape[0] * batch["token_ids"].shape[1])
    return {"train_tokens_per_second": round(tokens * (steps - _WARMUP) / sum(times[_WARMUP:])),
            "compile_seconds": round(times[0], 2)}


def generate_speed(model, window, batch, new, vocab):
    """Greedy decoding tokens/s of `batch` rows, `new` tokens after an 8-token prompt, with
    the key/value cache and without (the whole window re-run per token)."""
    import tensorflow as tf

    prompt = 8
    tokens = tf.random.stateless_uniform([batch, window], [1, 2], 5, vocab, tf.int32)

    @tf.function
    def cached(tokens):
        cache = model.empty_cache(batch, window)
        logits, cache = model.call_with_cache(tokens[:, :prompt], cache, 0)

        def body(i, tokens, cache, logits):
            chosen = tf.argmax(logits, -1, output_type=tf.int32)
            tokens = tf.tensor_scatter_nd_update(
                tokens, tf.stack([tf.range(batch), tf.fill([batch], i)], 1), chosen)
            logits, cache = model.call_with_cache(tokens[:, i:i + 1], cache, i)
            return i + 1, tokens, cache, logits[:, -1]

        return tf.while_loop(lambda i, *_: i < prompt + new, body,
                             (tf.constant(prompt), tokens, cache, logits[:, -1]))[1]

    @tf.function
    def uncached(tokens):
        segments = tf.ones_like(tokens)

        def body(i, tokens):
            logits = model({"token_ids": tokens, "segment_ids": segments}, training=False)
            chosen = tf.argmax(logits[:, i - 1], -1, output_type=tf.int32)
            return i + 1, tf.tensor_scatter_nd_update(
                tokens, tf.stack([tf.range(batch), tf.fill([batch], i)], 1), chosen)

        return tf.while_loop(lambda i, _: i < prompt + new, body, (tf.constant(prompt), tokens))[1]

    result = {}
    outputs = {}
    for name, decode in (("cached", cached), ("uncached", uncached)):
        decode(tokens)  # trace and warm up
        started = time.perf_counter()
        outputs[name] = decode(tokens).numpy()
        seconds = time.perf_counter() - started
        result[f"generate_tokens_per_second_{name}"] = round(batch * new / seconds)
    result["cached_equals_uncached"] = bool((outputs["cached"] == outputs["uncached"]).all())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["gpt", "llama", "bert"])
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=1, help="llama's key/value heads")
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--new", type=int, default=64, help="generated tokens per row")
    parser.add_argument("--jit-compile", action="store_true")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from models.factory import build_model
    from models.objectives import make_objective
    from pipeline.core.config import ModelConfig, TaskConfig

    results = []
    for family in args.families:
        config = ModelConfig(family=family, num_layers=args.layers, hidden_dim=args.width,
                             num_heads=args.heads, max_sequence_length=args.sequence,
                             num_kv_heads=args.kv_heads if family == "llama" else None)
        keras.utils.set_random_seed(0)
        model = build_model(config, TaskConfig(), args.vocab)
        objective = make_objective(model.objective, args.vocab, _SPECIALS)
        batch = _batch(np.random.default_rng(0), args.batch, args.sequence, args.vocab)
        row = {"family": family, "parameters": model.count_params(),
               **_train_speed(model, objective, batch, args.steps, args.jit_compile)}
        if objective.causal:
            row.update(generate_speed(model, args.sequence, 4, min(args.new, args.sequence - 8),
                                       args.vocab))
        print(json.dumps(row), flush=True)
        results.append(row)
    print(json.dumps({"shape": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    quiet_script()
    sys.exit(main())
