"""The examples artifact (transform): what train, tune and evaluate read.

    examples/train-XXXXX-of-NNNNN.tfrecord, eval-...   `tf.train.Example` shards
    examples/feature_spec.json                         the features, the window length,
        `pad_id`, `gzip` (whether the shards are gzipped), the length buckets, per split
        the shard names and example counts, and for a fine-tuning task its `task` entry

With data spans (`components/transform/by_span.py`) the artifact is a view of the spans a
run trains on: `train-s<span>-*` and `eval-s<span>-*` shards, `replay-s<span>-*` (the train
shards of older spans, split `replay` with its `fraction`), `golden-*` (the golden eval
set's, split `golden`, also without spans), and `spans` in `feature_spec.json` (the span
numbers of the train split; the trainer then reads the shards interleaved).

A language model's examples are packed windows; each holds exactly these features:

    token_ids      int64  [L]  token ids, `pad_id` where empty
    segment_ids    int64  [L]  0 = padding; 1, 2, ... = which document within the window
    num_bytes      int64  [1]  UTF-8 bytes of the text covered by this window's tokens
    domain         bytes  [1]  the documents' domain ("" if none; `MIXED_DOMAIN` for a
                               train window of several domains' remainders)
    length_bucket  bytes  [1]  the length bucket (e.g. "128-511", in text tokens) of the
                               window's documents (eval) or of its first document (train)

L is `transform.sequence_length`. Every document is `[bos] + ids + [eos]`; a document may
continue from the previous window (then that segment starts without bos).
Causal-LM target: position i predicts token i+1 when
`segment_ids[i+1] == segment_ids[i] != 0`; other positions carry no loss. Attention
stays within a segment id.

A fine-tuning task's examples are one document per window, never packed (one segment),
with these features besides (`components/transform/task_examples.py` encodes them):

    classification  label        int64 [1]  the label's id in the vocabulary
    text_to_text    target_start int64 [1]  the position of the target's first token
                    input_text   bytes [1]  the input the tokens hold (cut as they are)
                    target_text  bytes [1]  the target the tokens hold (the reference)

and `feature_spec.json`'s `task` entry records what a reader needs: the batch features
the trainer feeds the objective, the label vocabulary, the separator's ids, the budgets.
"""

from __future__ import annotations

import numpy as np

from pipeline.core import files
from pipeline.core.errors import UsageError

# 3: the shards' gzip is the boolean `gzip` (format 2 called it `compression`).
FORMAT_VERSION = 3
FEATURE_SPEC_FILE = "feature_spec.json"
# One suffix, gzipped or not (readers glob `<split>-*.tfrecord`); feature_spec.json says which.
TFRECORD_SUFFIX = ".tfrecord"
MIXED_DOMAIN = "(mixed)"
# The trainer feeds these to the task's objective (`models.objectives`), beside the tokens.
BATCH_FEATURES = {"classification": ["label"], "text_to_text": ["target_start"]}


def features(sequence_length: int, task_type: str = "lm") -> dict:
    """Feature name -> {"dtype", "shape"} of the examples of `task_type`."""
    result = {
        "token_ids": {"dtype": "int64", "shape": [sequence_length]},
        "segment_ids": {"dtype": "int64", "shape": [sequence_length]},
        "num_bytes": {"dtype": "int64", "shape": [1]},
        "domain": {"dtype": "string", "shape": [1]},
        "length_bucket": {"dtype": "string", "shape": [1]},
    }
    if task_type == "classification":
        result["label"] = {"dtype": "int64", "shape": [1]}
    elif task_type == "text_to_text":
        result["target_start"] = {"dtype": "int64", "shape": [1]}
        result["input_text"] = {"dtype": "string", "shape": [1]}
        result["target_text"] = {"dtype": "string", "shape": [1]}
    return result


def bucket_names(edges: tuple[int, ...] | list[int]) -> list[str]:
    """Names of the length buckets that `edges` (token counts) separate: "0-127", ..., "2048+"."""
    lows = [0, *edges]
    return [f"{low}-{high - 1}" for low, high in zip(lows, edges)] + [f"{lows[-1]}+"]


def bucket_of(num_tokens: np.ndarray, edges: tuple[int, ...] | list[int]) -> np.ndarray:
    """The bucket index of each document length (in text tokens)."""
    return np.searchsorted(np.asarray(edges), num_tokens, side="right")


def feature_spec(sequence_length: int, pad_id: int, gzip: bool, splits: dict,
                 length_buckets: list[int], task: dict | None = None) -> dict:
    """The content of `feature_spec.json`.

    Args:
        sequence_length: `transform.sequence_length`.
        pad_id: the tokenizer's pad id.
        gzip: whether the shards are gzipped (`transform.gzip`).
        splits: split -> {"shards": [file names], "examples": count}.
        length_buckets: `transform.length_buckets` (edges, in text tokens).
        task: a fine-tuning task's entry ({"type", ...}), None for a language model.

    Returns:
        JSON-ready data.
    """
    spec = {"format_version": FORMAT_VERSION,
            "features": features(sequence_length, task["type"] if task else "lm"),
            "sequence_length": sequence_length, "pad_id": pad_id, "gzip": gzip,
            "length_buckets": {"edges": list(length_buckets),
                               "names": bucket_names(length_buckets)},
            "mixed_domain": MIXED_DOMAIN, "splits": splits}
    if task:
        spec["task"] = {**task, "batch_features": BATCH_FEATURES[task["type"]]}
    return spec


def write_feature_spec(directory: str, spec: dict) -> None:
    """Write `feature_spec.json` into an examples directory."""
    files.write_json(files.join(directory, FEATURE_SPEC_FILE), spec)


def read_feature_spec(directory: str) -> dict:
    """The examples artifact's `feature_spec.json`, checked (any Beam filesystem).

    Args:
        directory: the examples artifact.

    Returns:
        The spec, its `gzip` false where the writer left it out.

    Raises:
        UsageError: it is missing, not a JSON object, of another format version, or its
            `gzip` is not a boolean.
    """
    path = files.join(directory, FEATURE_SPEC_FILE)
    try:
        spec = files.read_json(path)
    except (OSError, ValueError) as err:
        problem = ("missing" if not files.exists(path)
                   else f"unreadable ({err.__class__.__name__})")
        raise UsageError(f"{path}: {problem} feature spec (is {directory} an examples "
                         f"artifact?)") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: expected a JSON object")
    version = spec.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        # An older spec would be misread (format 2's gzipped shards taken for plain ones).
        raise UsageError(f"{path}: examples of format {version}, this lmpipe reads format "
                         f"{FORMAT_VERSION} (rerun transform)")
    gzip = spec.setdefault("gzip", False)
    if not isinstance(gzip, bool):
        raise UsageError(f"{path}: gzip must be true or false, got {gzip!r}")
    return spec


def shard_pattern(directory: str, split: str) -> str:
    """The glob of a split's shards (the directory's own name matches only itself)."""
    return files.join(files.escape(directory), f"{split}-*{TFRECORD_SUFFIX}")
