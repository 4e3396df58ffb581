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

import io
import os
import sys
from typing import Iterator

from pipeline.core.errors import UsageError, first_line
INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38  # larger temperatures become inf in the float32 signature
# The most `--prompts-file` may hold, as for a config file (`configio.MAX_CONFIG_BYTES`): it
# is read whole before the model loads, so that a bad line is refused before any output.
MAX_PROMPTS_BYTES = 16 * 2**20
# What `generate` takes (models.export.GENERATE_SIGNATURE, without importing TensorFlow here).
GENERATE_INPUTS = {"prompt": "string", "max_new_tokens": "int32", "temperature": "float32",
                   "top_k": "int32", "top_p": "float32", "seed": "int32"}


def resolve_model_dir(path: str) -> str:
    """The SavedModel directory that `--model PATH` names.

    Args:
        path: a SavedModel, a model artifact directory, or a serving directory.

    Returns:
        The SavedModel directory.

    Raises:
        UsageError: nothing loadable there.
    """
    from pipeline.core.contracts import serving_dir
    from pipeline.core.contracts.model import find_saved_model

    if not os.path.isdir(path):
        what = "not a directory" if os.path.exists(path) else "no such directory"
        raise UsageError(f"--model {path}: {what} (expected a SavedModel, a model artifact "
                         "or a serving directory)")
    saved_model = find_saved_model(path)
    if saved_model is not None:
        return saved_model
    latest = serving_dir.latest(path)
    if latest is None:
        raise UsageError(f"--model {path}: not a SavedModel, a model artifact, "
                         "or a serving directory with a complete version")
    return latest.path


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    """The prompts: `--prompt`, or the non-empty lines of `--prompts-file`.

    Args:
        prompt: `--prompt`, or None.
        prompts_file: `--prompts-file` (read when `prompt` is None): at most
            `MAX_PROMPTS_BYTES` of UTF-8, one prompt per line.

    Returns:
        The prompts.

    Raises:
        UsageError: one line naming the flag (not UTF-8, unreadable, too large, no prompt).
    """
    if prompt is not None:
        try:
            prompt.encode("utf-8")  # argv bytes that are not UTF-8 arrive as lone surrogates
        except UnicodeEncodeError as err:
            raise UsageError(f"--prompt: not valid UTF-8 (at character {err.start + 1})") from None
        return [prompt]
    try:
        with open(prompts_file, "rb") as f:
            data = f.read(MAX_PROMPTS_BYTES + 1)  # `/dev/zero` would otherwise fill memory
        if len(data) > MAX_PROMPTS_BYTES:
            raise UsageError(f"--prompts-file {prompts_file}: over "
                             f"{MAX_PROMPTS_BYTES // 2**20} MB (give the prompts in smaller files)")
        # Lines as a text file opened for reading gives them (universal newlines).
        lines = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        prompts = [line.rstrip("\n") for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--prompts-file {prompts_file}: cannot read ({err.__class__.__name__})") from None
    if not prompts:
        raise UsageError(f"--prompts-file {prompts_file}: no prompts (all lines empty)")
    return prompts


def check_sampling(max_tokens: int, temperature: float, top_k: int, top_p: float,
                   stream_chunk: int = 0, seed: int = 0) -> None:
    """Reject sampling settings the model's `generate` signature cannot honour.

    The signature takes int32 and float32 scalars, and TensorFlow wraps an integer that
    does not fit (seed 2**32 would sample what seed 0 does), so such values are refused.

    Args:
        max_tokens, temperature, top_k, top_p, stream_chunk, seed: the command line's values.

    Raises:
        UsageError: one line naming the flag.
    """
    for flag, value in (("--max-tokens", max_tokens), ("--top-k", top_k), ("--seed", seed),
                        ("--stream-chunk", stream_chunk)):
        if not INT32_MIN <= value <= INT32_MAX:
            raise UsageError(f"{flag} must fit in 32 bits ({INT32_MIN}..{INT32_MAX}), got {value}")
    if stream_chunk < 0:
        raise UsageError(f"--stream-chunk must be >= 0 (0 = as many tokens as one call can make), got {stream_chunk}")
    if max_tokens < 1:
        raise UsageError(f"--max-tokens must be >= 1, got {max_tokens}")
    if not temperature >= 0:
        raise UsageError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if temperature > FLOAT32_MAX:
        raise UsageError(f"--temperature must be at most {FLOAT32_MAX:.7g} (float32), "
                         f"got {temperature}")
    if top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0 keeps all tokens), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], got {top_p}")


def load_signature(model_dir: str, name: str):
    """Load a SavedModel and return its signature `name`.

    Raises:
        UsageError: the directory does not load, or has no such signature (or a
            `generate` signature of another contract).
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the model uses)

    try:
        model = tf.saved_model.load(model_dir)
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise UsageError(f"--model {model_dir}: cannot load SavedModel "
                         f"({first_line(err)})") from None
    if name not in model.signatures:
        raise UsageError(f"--model {model_dir}: no '{name}' signature "
                         f"(has {', '.join(sorted(model.signatures)) or 'none'})")
    if name == "generate":
        check_generate_signature(model.signatures[name], model_dir)
    return model.signatures[name]


def check_generate_signature(signature, model_dir: str) -> None:
    """Refuse a `generate` signature of another contract before any output is written.

    Args:
        signature: the loaded `generate` signature.
        model_dir: the SavedModel it came from (for the message).

    Raises:
        UsageError: its inputs (names, dtypes) or its `completion` output differ.
    """
    _, specs = signature.structured_input_signature
    found = {name: spec.dtype.name for name, spec in specs.items()}
    if found != GENERATE_INPUTS or "completion" not in signature.structured_outputs:
        takes = ", ".join(f"{name}:{dtype}" for name, dtype in sorted(found.items()))
        raise UsageError(f"--model {model_dir}: its 'generate' signature is not lmpipe's "
                         f"(takes {takes or 'nothing'}; expected "
                         f"{', '.join(f'{n}:{d}' for n, d in GENERATE_INPUTS.items())} "
                         "-> completion)")


def generate(signature, prompts: list[str], *, max_tokens: int, temperature: float,
             top_k: int, top_p: float, seed: int) -> list[str]:
    """Completions of `prompts` from a model's `generate` signature.

    Returns:
        One completion per prompt (the new text only).
    """
    result = _call(signature, prompts, max_tokens=max_tokens, temperature=temperature,
                   top_k=top_k, top_p=top_p, seed=seed)
    return [text.decode("utf-8", "replace") for text in result["completion"]]


def _call(signature, prompts: list[str], *, max_tokens: int, temperature: float, top_k: int,
          top_p: float, seed: int) -> dict:
    """The `generate` signature's outputs for `prompts`, as NumPy arrays."""
    import tensorflow as tf

    result = signature(prompt=tf.constant(prompts, tf.string),
                       max_new_tokens=tf.constant(max_tokens, tf.int32),
                       temperature=tf.constant(temperature, tf.float32),
                       top_k=tf.constant(top_k, tf.int32), top_p=tf.constant(top_p, tf.float32),
                       seed=tf.constant(seed, tf.int32))
    return {name: value.numpy() for name, value in result.items()}


def stream(signature, prompt: str, *, max_tokens: int, chunk: int, temperature: float,
           top_k: int, top_p: float, seed: int) -> Iterator[str]:
    """The completion of one prompt, in pieces of at most `chunk` tokens as they are made.

    One call makes at most the model's window less one token (the prompt keeps its last
    tokens), so a longer completion takes several calls whatever `chunk` is; the model
    says how many tokens each call made and whether it stopped at eos, so the completion
    has `max_tokens` tokens (or stops at eos) however it is cut. (A model exported before
    it said so is taken to make `chunk` tokens a call, and to stop with an empty piece.)

    Args:
        signature: the model's `generate` signature.
        prompt: the prompt.
        max_tokens: new tokens in all.
        chunk: new tokens per call (0: as many as one call can make).
        temperature, top_k, top_p, seed: as for `generate`.

    Yields:
        Non-empty pieces of text; joined, the completion.
    """
    step = chunk or max_tokens
    text, made = "", 0
    while made < max_tokens:
        count = min(step, max_tokens - made)
        result = _call(signature, [prompt + text], max_tokens=count, temperature=temperature,
                       top_k=top_k, top_p=top_p, seed=seed)
        piece = result["completion"][0].decode("utf-8", "replace")
        if piece:
            yield piece
            text += piece
        if "new_tokens" not in result:
            if not piece:
                return
            made += count
            continue
        made += int(result["new_tokens"][0])
        if result["ended"][0] or not result["new_tokens"][0]:
            return


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
    check_sampling(args.max_tokens, args.temperature, args.top_k, args.top_p, args.stream_chunk,
                   args.seed)
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
