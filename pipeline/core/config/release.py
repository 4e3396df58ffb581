"""The release gate: `evaluation` and `push`."""

from __future__ import annotations

from typing import Literal

from pipeline.core.config.checks import (config_dataclass, require, require_plain_path,
                                         require_positive)


@config_dataclass
class EvaluationConfig:
    """The release gate and what the evaluation reports (`components/evaluate/__init__.py`).

    Attributes:
        max_perplexity: value threshold on the overall perplexity (None: no bound).
        max_bits_per_byte_increase: change threshold against the model in service: overall
            bits per byte may worsen by at most this fraction (0.005 = 0.5%). A masked LM
            (bert) has no bits per byte: its bits-per-byte thresholds are skipped, with the
            reason in the blessing, and `max_perplexity` bounds its masked-token perplexity.
        max_slice_bits_per_byte_increase: the same on every slice of `slice_features`.
        slice_gate_min_examples: slice failures on fewer examples do not block the push.
        slice_features: one-value example features to slice by. Examples without a
            `length_bucket` feature get one derived from each window's `segment_ids`
            (its longest document span, in tokens).
        length_buckets: edges of that derived bucket (32, 64 -> 0-31, 32-63, 64+).
        min_slice_size: TFMA computes no metrics for smaller slices.
        batch_size: examples per model call in TFMA.
        num_samples: eval document beginnings to continue (0: none).
        sample_prompt_words: words of each document used as the prompt.
        sample_max_tokens, sample_temperature, sample_top_k, sample_top_p, seed: decoding
            of the samples (one greedy and one sampled continuation each).
    """

    max_perplexity: float | None = None
    max_bits_per_byte_increase: float | None = 0.005
    max_slice_bits_per_byte_increase: float | None = None
    slice_gate_min_examples: int = 20
    slice_features: tuple[str, ...] = ("domain", "length_bucket")
    length_buckets: tuple[int, ...] = (32, 64)
    min_slice_size: int = 1
    batch_size: int = 16
    num_samples: int = 4
    sample_prompt_words: int = 8
    sample_max_tokens: int = 32
    sample_temperature: float = 0.8
    sample_top_k: int = 0
    sample_top_p: float = 0.95
    seed: int = 0

    def __post_init__(self):
        require_positive(self, "max_perplexity", "batch_size", "min_slice_size",
                         "slice_gate_min_examples", "sample_prompt_words", "sample_max_tokens",
                         "sample_temperature")
        for name in ("max_bits_per_byte_increase", "max_slice_bits_per_byte_increase"):
            value = getattr(self, name)
            require(value is None or value >= 0, name,
                    f"must be >= 0 (a relative change, 0.005 = 0.5%), got {value}")
        require(len(set(self.slice_features)) == len(self.slice_features), "slice_features",
                f"must not repeat a feature, got {list(self.slice_features)}")
        buckets = list(self.length_buckets)
        require(all(b > 0 for b in buckets) and buckets == sorted(set(buckets)), "length_buckets",
                f"must be increasing token counts > 0, got {buckets}")
        require(self.num_samples >= 0, "num_samples", f"must be >= 0, got {self.num_samples}")
        require(self.sample_top_k >= 0, "sample_top_k",
                f"must be >= 0 (0 keeps all tokens), got {self.sample_top_k}")
        require(0.0 < self.sample_top_p <= 1.0, "sample_top_p",
                f"must be in (0, 1], got {self.sample_top_p}")


@config_dataclass
class PushConfig:
    """Where blessed models go (`components/push/__init__.py`).

    Attributes:
        serving_dir: the TF Serving style directory of numbered versions.
        keep_versions: how many of the newest versions to keep.
        variant: which export of the model is evaluated, gated and pushed: `float`
            (`saved_model/`) or `quantized` (`saved_model_int8/`, needs train.quantize).
        card_paths: how the model card shows paths (the model, its data, the raw files,
            the root, the serving directory): `relative` to the working directory of the
            push where they lie below it (others stay absolute), `absolute`, or
            `redacted` (every absolute path and URL becomes `<redacted>`; the
            fingerprints still identify the data).
    """

    serving_dir: str = "serving"
    keep_versions: int = 5
    variant: Literal["float", "quantized"] = "float"
    card_paths: Literal["relative", "absolute", "redacted"] = "relative"

    def __post_init__(self):
        require_positive(self, "keep_versions")
        require(bool(self.serving_dir.strip()), "serving_dir", "must be a directory path, got ''")
        require_plain_path(self, "serving_dir")
