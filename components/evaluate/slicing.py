"""Slice features: the examples' own (`domain`, `length_bucket`, ...) and derived ones.

The transform writes each window's `length_bucket` (the length, in text tokens, of the
whole documents it packs; edges `transform.length_buckets`). Examples written without it
still get a `length_bucket`, derived here from `segment_ids`: the bucket (edges
`evaluation.length_buckets`) of the window's longest document span, in tokens. A window
inside a long document lands in the top bucket, a window of short documents in a low one;
the span is capped by the window. TFMA slices on features only, so a small extractor adds
the derived bucket to each example's features before TFMA computes the slice keys.
"""

from __future__ import annotations

import copy
import re

import numpy as np

from pipeline.core.errors import UsageError

LENGTH_BUCKET = "length_bucket"
DERIVABLE = (LENGTH_BUCKET,)


def bucket_labels(boundaries: tuple[int, ...]) -> list[str]:
    """Bucket names as the transform writes them: (32, 64) -> 0-31, 32-63, 64+.

    Args:
        boundaries: increasing token counts, each the first length of a new bucket.

    Returns:
        One label per bucket (len(boundaries) + 1).
    """
    lows = [0, *boundaries]
    return [f"{low}-{high - 1}" for low, high in zip(lows, boundaries)] + [f"{lows[-1]}+"]


def bucket_start(label: str) -> int:
    """The first length of a bucket label ("32-63" -> 32), for ordering; -1 if none."""
    match = re.match(r"\d+", label)
    return int(match.group()) if match else -1


def longest_span(segment_ids: np.ndarray) -> int:
    """Tokens in the longest document span of one window (0 for an all-padding window)."""
    ids = np.asarray(segment_ids, np.int64).reshape(-1)
    counts = np.bincount(ids[ids > 0]) if np.any(ids > 0) else np.zeros(1, np.int64)
    return int(counts.max())


def length_bucket(segment_ids: np.ndarray, boundaries: tuple[int, ...]) -> str:
    """The derived `length_bucket` label of one window."""
    span = longest_span(segment_ids)
    index = int(np.searchsorted(np.asarray(boundaries, np.int64), span, side="right"))
    return bucket_labels(boundaries)[index]


def features_to_derive(names: tuple[str, ...], examples_dir: str) -> tuple[str, ...]:
    """Check the configured slice features; return those evaluate must derive.

    Each must be a one-value feature of the examples, or derivable when they lack it.
    TFMA would otherwise quietly compute no slices for it (or one per token id).

    Args:
        names: `evaluation.slice_features`.
        examples_dir: the examples artifact (its `feature_spec.json` lists the features).

    Returns:
        The names among `names` that the examples do not carry (all in `DERIVABLE`).

    Raises:
        UsageError: a name is not usable.
    """
    from pipeline.core.contracts.examples import FEATURE_SPEC_FILE, read_feature_spec

    features = read_feature_spec(examples_dir).get("features")
    if not isinstance(features, dict):
        raise UsageError(f"{examples_dir}/{FEATURE_SPEC_FILE}: no 'features' listed")
    own = {name for name, spec in features.items() if spec.get("shape") == [1]}
    usable = sorted(own | set(DERIVABLE))
    for name in names:
        if name not in usable:
            raise UsageError(f"evaluation.slice_features: {name!r} is not a one-value feature "
                             f"of the examples (usable: {', '.join(usable)})")
    return tuple(name for name in names if name not in own)


def derive_features(derived: tuple[str, ...], boundaries: tuple[int, ...]):
    """A TFMA extractor that adds the derived features to each (unbatched) example.

    Args:
        derived: from `features_to_derive`.
        boundaries: `evaluation.length_buckets`.

    Returns:
        A `tfma.extractors.Extractor`, or None when nothing is to be derived.
    """
    import apache_beam as beam
    from tensorflow_model_analysis.extractors import extractor

    if LENGTH_BUCKET not in derived:
        return None
    return extractor.Extractor(stage_name="AddLengthBucket",
                               ptransform=beam.Map(_with_length_bucket, tuple(boundaries)))


def _with_length_bucket(element: dict, boundaries: tuple[int, ...]) -> dict:
    from tensorflow_model_analysis import constants

    features = element.get(constants.FEATURES_KEY)
    if features is None or "segment_ids" not in features:
        raise ValueError("deriving length_bucket needs the examples' segment_ids feature")
    label = length_bucket(features["segment_ids"], boundaries)
    # Extracts are shared between stages: copy before adding, never mutate.
    element = copy.copy(element)
    element[constants.FEATURES_KEY] = {**features, LENGTH_BUCKET: np.array([label.encode()],
                                                                           dtype=object)}
    return element
