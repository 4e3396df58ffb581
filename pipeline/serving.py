"""Using an exported or pushed model: `lmpipe generate`.

`--model` may be a SavedModel directory, a model artifact (with `saved_model/` inside), or
a serving directory, in which case its highest complete version is used. TensorFlow is
imported only once the arguments are known to be good.
"""

from __future__ import annotations

import os
import sys

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
        return [prompt]
    try:
        with open(prompts_file, encoding="utf-8") as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--prompts-file {prompts_file}: cannot read ({err.__class__.__name__})") from None
    if not prompts:
        raise UsageError(f"--prompts-file {prompts_file}: no prompts (all lines empty)")
    return prompts


def check_sampling(max_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    """Reject sampling settings the model's `generate` signature cannot honour."""
    if max_tokens < 1:
        raise UsageError(f"--max-tokens must be >= 1, got {max_tokens}")
    if temperature < 0:
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


def generate_cli(args) -> int:
    """`lmpipe generate`: print each prompt followed by its completion, one per line.

    Args:
        args: the parsed command line (model, prompt or prompts_file, max_tokens,
            temperature, top_k, top_p, seed).

    Returns:
        The exit status.
    """
    check_sampling(args.max_tokens, args.temperature, args.top_k, args.top_p)
    prompts = read_prompts(args.prompt, args.prompts_file)
    model_dir = resolve_model_dir(args.model)
    print(f"model: {model_dir}", file=sys.stderr, flush=True)
    signature = load_signature(model_dir, "generate")
    completions = generate(signature, prompts, max_tokens=args.max_tokens,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed)
    for prompt, completion in zip(prompts, completions):
        print(prompt + completion, flush=True)
    return 0
