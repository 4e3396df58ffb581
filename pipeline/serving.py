"""Using an exported or pushed model: `lmpipe generate`.

`--model` may be a SavedModel directory, a model artifact (with `saved_model/` inside), or
a serving directory, in which case its highest complete version is used. TensorFlow is
imported only once the arguments are known to be good.

Streaming: the `generate` signature returns whole completions, so `stream` calls it for a
few tokens at a time on the prompt plus the text so far and prints each piece as it comes.
The exported sampler draws the token at position i with the stateless seed (seed, i), so
a streamed completion is the one a single call gives, as long as the text so far
re-tokenizes to the ids the model chose and prompt plus completion fit the model's
window (beyond it, the window slides). A piece that comes back empty (the model ended the
text) ends the stream.
"""

from __future__ import annotations

import os
import sys
from typing import Iterator

from pipeline.errors import UsageError

SAVED_MODEL_FILE = "saved_model.pb"


def resolve_model_dir(path: str) -> str:
    """The SavedModel directory that `--model PATH` names.

    Args:
        path: a SavedModel, a model artifact directory, or a serving directory.

    Returns:
        The SavedModel directory.

    Raises:
        UsageError: nothing loadable there.
    """
    from components.evaluation import serving_dir

    if not os.path.isdir(path):
        raise UsageError(f"--model {path}: no such directory")
    for candidate in (path, os.path.join(path, "saved_model")):
        if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    latest = serving_dir.latest(path)
    if latest is None:
        raise UsageError(f"--model {path}: not a SavedModel, a model artifact, "
                         "or a serving directory with a complete version")
    return latest.path


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    """The prompts: `--prompt`, or the non-empty lines of `--prompts-file`."""
    if prompt is not None:
        try:
            prompt.encode("utf-8")  # argv bytes that are not UTF-8 arrive as lone surrogates
        except UnicodeEncodeError as err:
            raise UsageError(f"--prompt: not valid UTF-8 (at character {err.start + 1})") from None
        return [prompt]
    try:
        with open(prompts_file, encoding="utf-8") as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--prompts-file {prompts_file}: cannot read ({err.__class__.__name__})") from None
    if not prompts:
        raise UsageError(f"--prompts-file {prompts_file}: no prompts (all lines empty)")
    return prompts


def check_sampling(max_tokens: int, temperature: float, top_k: int, top_p: float,
                   stream_chunk: int = 0) -> None:
    """Reject sampling settings the model's `generate` signature cannot honour."""
    if stream_chunk < 0:
        raise UsageError(f"--stream-chunk must be >= 0 (0 = one call, no streaming), got {stream_chunk}")
    if max_tokens < 1:
        raise UsageError(f"--max-tokens must be >= 1, got {max_tokens}")
    if not temperature >= 0 or temperature == float("inf"):
        raise UsageError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0 keeps all tokens), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], got {top_p}")


def load_signature(model_dir: str, name: str):
    """Load a SavedModel and return its signature `name`.

    Raises:
        UsageError: the directory does not load, or has no such signature.
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the model uses)

    try:
        model = tf.saved_model.load(model_dir)
    except (OSError, ValueError, tf.errors.OpError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise UsageError(f"--model {model_dir}: cannot load SavedModel ({first_line})") from None
    if name not in model.signatures:
        raise UsageError(f"--model {model_dir}: no '{name}' signature "
                         f"(has {', '.join(sorted(model.signatures)) or 'none'})")
    return model.signatures[name]


def generate(signature, prompts: list[str], *, max_tokens: int, temperature: float,
             top_k: int, top_p: float, seed: int) -> list[str]:
    """Completions of `prompts` from a model's `generate` signature.

    Returns:
        One completion per prompt (the new text only).
    """
    import tensorflow as tf

    result = signature(prompt=tf.constant(prompts, tf.string),
                       max_new_tokens=tf.constant(max_tokens, tf.int32),
                       temperature=tf.constant(temperature, tf.float32),
                       top_k=tf.constant(top_k, tf.int32), top_p=tf.constant(top_p, tf.float32),
                       seed=tf.constant(seed, tf.int32))
    return [text.decode("utf-8", "replace") for text in result["completion"].numpy()]


def stream(signature, prompt: str, *, max_tokens: int, chunk: int, temperature: float,
           top_k: int, top_p: float, seed: int) -> Iterator[str]:
    """The completion of one prompt, in pieces of at most `chunk` tokens as they are made.

    Args:
        signature: the model's `generate` signature.
        prompt: the prompt.
        max_tokens: new tokens in all.
        chunk: new tokens per call (0: all of them in one call).
        temperature, top_k, top_p, seed: as for `generate`.

    Yields:
        Non-empty pieces of text; joined, the completion.
    """
    step = chunk or max_tokens
    text, made = "", 0
    while made < max_tokens:
        count = min(step, max_tokens - made)
        [piece] = generate(signature, [prompt + text], max_tokens=count, temperature=temperature,
                           top_k=top_k, top_p=top_p, seed=seed)
        if not piece:
            return
        yield piece
        text += piece
        made += count


def generate_cli(args, out=None) -> int:
    """`lmpipe generate`: print each prompt followed by its completion, one per line.

    The completion is streamed: each piece is written and flushed as soon as it is made.

    Args:
        args: the parsed command line (model, prompt or prompts_file, max_tokens,
            temperature, top_k, top_p, seed, stream_chunk).
        out: where to write (stdout unless given).

    Returns:
        The exit status.
    """
    out = out or sys.stdout
    check_sampling(args.max_tokens, args.temperature, args.top_k, args.top_p, args.stream_chunk)
    prompts = read_prompts(args.prompt, args.prompts_file)
    model_dir = resolve_model_dir(args.model)
    print(f"model: {model_dir}", file=sys.stderr, flush=True)
    signature = load_signature(model_dir, "generate")
    for prompt in prompts:
        out.write(prompt)
        out.flush()
        for piece in stream(signature, prompt, max_tokens=args.max_tokens,
                            chunk=args.stream_chunk, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, seed=args.seed):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
    return 0
