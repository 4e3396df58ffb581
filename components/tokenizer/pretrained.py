"""The tokenizer of a model the run continues from (the tokenizer step copies it).

A fine-tuning task's source is `task.tokenizer`, else `train.warm_start`: a pretrained
backbone only understands the ids of the tokenizer it was trained with, and a model
trained from scratch for comparison must see the same ids, so neither may train a new one
on the task's documents. A language model's is the model `train.warm_start` continues from.

A source is a tokenizer artifact (a directory with `tokenizer.json`), or a model whose
training record names its tokenizer: a model artifact (`train_summary.json`), a serving
version (`model_card.json`), a model artifact's `saved_model/` or `.keras` file, or
`latest_pushed` (the newest version in `push.serving_dir`). The tokenizer artifact is
copied as it is and must still have the digest the model recorded.
"""

from __future__ import annotations

import os

from pipeline.core.artifacts import Artifact
from pipeline.core.errors import UsageError


def requested_source(config) -> str | None:
    """What the task's tokenizer comes from: `task.tokenizer`, else `train.warm_start`."""
    if config.task.type == "lm":
        return None
    return config.task.tokenizer or config.train.warm_start


def source_key(config) -> str:
    """The config key `requested_source` read (messages name it)."""
    return "task.tokenizer" if config.task.tokenizer else "train.warm_start"


def task_source(config) -> Artifact:
    """A fine-tuning task's tokenizer to copy, fingerprinted by its digest.

    Raises:
        UsageError: the source names no usable tokenizer.
    """
    from pipeline.core.contracts import model as model_contract

    requested, key = requested_source(config), source_key(config)
    path = requested
    if requested == model_contract.LATEST_PUSHED:
        latest = model_contract.resolve(requested, config.push.serving_dir, base_key="")
        if not latest.uri:
            raise UsageError(f"{key}: {requested} names nothing: "
                             f"{config.push.serving_dir} holds no model yet (set task.tokenizer "
                             "to a tokenizer or model)")
        path = latest.uri
    directory, expected = tokenizer_of(os.path.abspath(os.path.expanduser(path)), requested, key)
    return Artifact(type="Tokenizer", uri=directory, fingerprint=expected,
                    properties={"requested": requested, "source": path, "sha256": expected})


def tokenizer_of(path: str, requested: str, key: str) -> tuple[str, str]:
    """The tokenizer artifact a source stands for, and its digest.

    Args:
        path: the resolved source path.
        requested: the configured value (for messages).
        key: the config key that holds it (`task.tokenizer` or `train.warm_start`).

    Returns:
        (tokenizer artifact directory, its SHA-256 as `tokenizer_digest`).
    """
    from pipeline.core.contracts.model import training_record
    from pipeline.core.contracts.tokenizer import tokenizer_digest
    from pipeline.core.contracts.tokenizer import INFO_FILE

    if not os.path.exists(path):
        raise UsageError(f"{key}: no tokenizer or model at {path} "
                         f"(from {requested!r})")
    if os.path.isfile(os.path.join(path, INFO_FILE)):
        return path, tokenizer_digest(path)
    recorded = (training_record(path) or {}).get("tokenizer") or {}
    directory, expected = recorded.get("uri"), recorded.get("sha256")
    if not directory or not expected:
        raise UsageError(f"{key}: {path} is neither a tokenizer artifact nor a model "
                         "whose train_summary.json or model_card.json records its tokenizer")
    if not os.path.isfile(os.path.join(directory, INFO_FILE)):
        raise UsageError(f"{key}: the tokenizer {path} was trained with is no longer "
                         f"at {directory}")
    found = tokenizer_digest(directory)
    if found != expected:
        raise UsageError(f"{key}: the tokenizer at {directory} changed since {path} "
                         f"was trained (sha256 {found[:12]}, recorded {expected[:12]})")
    return directory, expected


def copy_tokenizer(source: Artifact, output: str, runtime) -> dict:
    """Copy the source's tokenizer artifact into the output.

    Args:
        source: the resolved tokenizer artifact (`resolve_source`).
        output: the tokenizer directory to write.
        runtime: the run's `Runtime`.

    Returns:
        Properties of the tokenizer artifact (type, vocab size, special ids, source).
    """
    import shutil

    from pipeline.core.contracts.tokenizer import read_info, tokenizer_digest
    from pipeline.core.artifacts import STEP_OUTPUT_MARK

    for name in sorted(os.listdir(source.uri)):
        # A step run alone marks its output as its own; the copy gets this step's mark.
        if name != STEP_OUTPUT_MARK and os.path.isfile(os.path.join(source.uri, name)):
            shutil.copy2(os.path.join(source.uri, name), os.path.join(output, name))
    copied = tokenizer_digest(output)
    if copied != source.fingerprint:
        raise UsageError(f"task.tokenizer: {source.uri} changed while it was copied")
    info = read_info(output)
    runtime.log(f"[tokenizer] imported {info.type} ({info.vocab_size} ids) from "
                f"{source.properties.get('source')}")
    return {"tokenizer": {"type": info.type, "vocab_size": info.vocab_size,
                          "special_tokens": info.special_tokens,
                          "imported_from": source.properties.get("source")}}
