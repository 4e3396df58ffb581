"""The release gate: `evaluation` and `push`."""

from __future__ import annotations

import re
from dataclasses import field
from typing import Literal

from pipeline.core.config.checks import (config_dataclass, require, require_plain_path,
                                         require_positive)
from pipeline.core.config.cloud import (VERTEX_REGIONS, _require_gcs, _require_image,
                                        _require_no_space, _require_project)

# A Vertex AI endpoint's numeric ID (else `push.vertex.endpoint` is its display name).
ENDPOINT_ID = re.compile(r"^[0-9]+$")

# The longest `push.infra_validation_timeout`: a bound that waiting on a process can take.
MAX_INFRA_VALIDATION_SECONDS = 86400.0


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
        golden_inputs: the golden eval set: paths, directories or globs, read and cleaned
            by ingest like `data.inputs` (empty: none; a pattern that matches nothing stops
            the run, exit status 2). Its documents are never trained on: a corpus document
            with the same cleaned text is dropped from both splits and counted (drop reason
            `golden`), and the cleaned golden documents are ingest's `golden` output.
            The transform packs them as it packs the eval split (the examples' `golden`
            split, with the run's tokenizer), and evaluate measures them with the same
            metrics, slices and model in service as the eval split (metrics.json
            `golden`; `golden_perplexity` and `golden_bits_per_byte` in latest_run.json,
            null without a golden set). A language model's only.
        max_golden_perplexity: value threshold on the golden set's overall perplexity
            (None: no bound).
        max_golden_bits_per_byte_increase: change threshold against the model in
            service on the golden set: its bits per byte may worsen by at most this
            fraction (None: not gated). The eval split's growing with the corpus does not
            move the golden set, so this gate compares like with like across retrains.
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
    golden_inputs: tuple[str, ...] = ()
    max_golden_perplexity: float | None = None
    max_golden_bits_per_byte_increase: float | None = None

    def __post_init__(self):
        require(all(p.strip() for p in self.golden_inputs), "golden_inputs",
                "paths and globs must not be empty")
        require_positive(self, "max_perplexity", "max_golden_perplexity", "batch_size",
                         "min_slice_size",
                         "slice_gate_min_examples", "sample_prompt_words", "sample_max_tokens",
                         "sample_temperature")
        for name in ("max_bits_per_byte_increase", "max_slice_bits_per_byte_increase",
                     "max_golden_bits_per_byte_increase"):
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
class PushVertexConfig:
    """Deploying each pushed version to a Vertex AI endpoint (`components/push/vertex.py`).

    Opt-in. A pushed version is copied to Cloud Storage, uploaded to the Vertex AI Model
    Registry (a new version of the registry model when one of that name exists) with the
    serving image built from `Dockerfile.serving`, and deployed to the endpoint.

    Attributes:
        enabled: deploy each version that push publishes.
        project, location: the Google Cloud project and region of the model and endpoint
            (project required when enabled).
        image: the serving image built from `Dockerfile.serving` (required when enabled).
        artifact_root: the gs:// directory each version is copied to, as
            `<artifact_root>/<version>-<SavedModel digest, 12 digits>/<version>/`: a
            serving directory of that one version, which Vertex hands to the container as
            AIP_STORAGE_URI (required when enabled).
        model_name: the registry model's display name.
        endpoint: the endpoint's display name (created when no endpoint has it) or its
            numeric ID (which must exist).
        machine_type: the machine of each serving replica.
        min_replicas, max_replicas: autoscaling bounds of the deployed version.
        traffic_percentage: the new version's share of the endpoint's traffic; the
            versions already deployed share the rest in their current proportions.
        service_account: what the serving container runs as (None: Vertex's default).
    """

    enabled: bool = False
    project: str | None = None
    location: str = "us-central1"
    image: str | None = None
    artifact_root: str | None = None
    model_name: str = "lmpipe"
    endpoint: str = "lmpipe"
    machine_type: str = "n1-standard-4"
    min_replicas: int = 1
    max_replicas: int = 1
    traffic_percentage: int = 100
    service_account: str | None = None

    def __post_init__(self):
        require(self.location in VERTEX_REGIONS, "location",
                f"must be a region where Vertex AI runs (such as us-central1), got {self.location!r}")
        _require_gcs(self, "artifact_root")
        _require_no_space(self, "project", "image", "model_name", "endpoint", "machine_type",
                          "service_account")
        _require_project(self)
        _require_image(self, "image")
        require_positive(self, "min_replicas")
        require(self.max_replicas >= self.min_replicas, "max_replicas",
                f"must be >= min_replicas ({self.min_replicas}), got {self.max_replicas}")
        require(0 <= self.traffic_percentage <= 100, "traffic_percentage",
                f"must be a percentage in 0..100, got {self.traffic_percentage}")
        require(self.service_account is None or self.service_account.count("@") == 1,
                "service_account", f"must be a service account email, got {self.service_account!r}")
        for name in ("project", "image", "artifact_root"):
            require(not self.enabled or getattr(self, name) is not None, name,
                    "is required when push.vertex.enabled is true")


@config_dataclass
class PushConfig:
    """Where blessed models go (`components/push/__init__.py`).

    Attributes:
        serving_dir: the directory of numbered versions, in TF Serving's layout
            (`lmpipe serve` serves it; stock TF Serving cannot: it lacks tf-text's
            SentencePiece op).
        keep_versions: how many of the newest versions to keep.
        variant: which export of the model is evaluated, gated and pushed: `float`
            (`saved_model/`) or `quantized` (`saved_model_int8/`, needs train.quantize).
        card_paths: how the model card shows paths (the model, its data, the raw files,
            the root, the serving directory): `relative` to the working directory of the
            push where they lie below it (others stay absolute), `absolute`, or
            `redacted` (every absolute path and URL becomes `<redacted>`; the
            fingerprints still identify the data).
        infra_validation: before publishing, serve the candidate (the SavedModel of
            `variant`) in a fresh `lmpipe serve` process and send it one canary request
            per signature a client calls (`generate`, `score`, `classify`), as TFX's
            InfraValidator does; a model that is not served, or answers with the wrong
            shape or type or a number that is not finite, is not pushed (`push.json`
            says why). The signatures over serialized examples are evaluate's, which
            already ran them.
        infra_validation_timeout: seconds the whole check may take (start, load, warm-up,
            canaries); then the serving process is stopped and the model is not pushed.
    """

    serving_dir: str = "serving"
    keep_versions: int = 5
    variant: Literal["float", "quantized"] = "float"
    card_paths: Literal["relative", "absolute", "redacted"] = "relative"
    vertex: PushVertexConfig = field(default_factory=PushVertexConfig)
    infra_validation: bool = True
    infra_validation_timeout: float = 120.0

    def __post_init__(self):
        require_positive(self, "keep_versions", "infra_validation_timeout")
        require(bool(self.serving_dir.strip()), "serving_dir", "must be a directory path, got ''")
        require_plain_path(self, "serving_dir")
        require(self.infra_validation_timeout <= MAX_INFRA_VALIDATION_SECONDS,
                "infra_validation_timeout",
                f"must be at most {MAX_INFRA_VALIDATION_SECONDS} seconds (a day), "
                f"got {self.infra_validation_timeout}")
