"""The config tree: one frozen, keyword-only dataclass per section.

`pipeline.yaml` is one instance of `LmpipeConfig`. Each component reads only the sections
it declares (see `components/*.py` `SPEC.config`), and only those enter its cache key.
Checks within a section live in its `__post_init__`; checks across sections live in
`LmpipeConfig.__post_init__`. Field docs are in README.md ("Configuration").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import ConfigError

config_dataclass = dataclass(frozen=True, kw_only=True)


def require(condition: bool, key: str, expected: str) -> None:
    """Raise a `ConfigError` for `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(key, expected)


def require_positive(section: object, *names: str) -> None:
    """Each named int/float field of `section` must be > 0."""
    for name in names:
        value = getattr(section, name)
        require(value is None or value > 0, name, f"must be > 0, got {value}")


@config_dataclass
class PipelineConfig:
    name: str = "lmpipe"
    root: str = "runs"
    beam_args: tuple[str, ...] = ("--direct_running_mode=in_memory",)


@config_dataclass
class DataConfig:
    inputs: tuple[str, ...]
    text_field: str = "text"
    domain_field: str | None = None
    label_field: str | None = None
    txt_mode: Literal["line", "file"] = "line"
    invalid_utf8: Literal["drop", "replace"] = "drop"
    control_chars: Literal["remove", "keep"] = "remove"
    normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    whitespace: Literal["normalize", "collapse", "keep"] = "normalize"
    min_chars: int = 1
    max_chars: int = 1_000_000
    dedup: bool = True
    eval_fraction: float = 0.05
    split_salt: str = "lmpipe"

    def __post_init__(self):
        require(len(self.inputs) > 0, "inputs", "needs at least one path or glob")
        require(all(p.strip() for p in self.inputs), "inputs", "paths and globs must not be empty")
        require(self.text_field != self.domain_field, "domain_field",
                f"must differ from data.text_field ({self.text_field!r})")
        require(0.0 < self.eval_fraction < 1.0, "eval_fraction",
                f"must be between 0 and 1 (exclusive), got {self.eval_fraction}")
        require(self.min_chars >= 1, "min_chars", f"must be >= 1, got {self.min_chars}")
        require(self.max_chars >= max(self.min_chars, 1000), "max_chars",
                f"must be >= 1000 and >= data.min_chars ({self.min_chars}), got {self.max_chars}")


@config_dataclass
class TokenizerConfig:
    type: Literal["bpe", "unigram", "wordpiece"] = "bpe"
    vocab_size: int = 4000
    sample_bytes: int = 50_000_000
    character_coverage: float = 0.9995
    lower_case: bool = False
    seed: int = 0

    def __post_init__(self):
        require(self.vocab_size >= 300, "vocab_size",
                f"must be >= 300 (256 byte-fallback pieces plus specials), got {self.vocab_size}")
        require_positive(self, "sample_bytes")
        require(0.98 <= self.character_coverage <= 1.0, "character_coverage",
                f"must be in [0.98, 1.0] (SentencePiece's range), got {self.character_coverage}")
        require(not self.lower_case or self.type == "wordpiece", "lower_case",
                f"is a WordPiece option (tokenizer.type is {self.type!r})")


@config_dataclass
class TransformConfig:
    sequence_length: int = 128
    compression: Literal["none", "gzip"] = "none"
    mix_train_tails: bool = True
    length_buckets: tuple[int, ...] = (128, 512, 2048)
    tokenizer_processes: int | None = None

    def __post_init__(self):
        require(self.sequence_length >= 8, "sequence_length",
                f"must be >= 8, got {self.sequence_length}")
        require_positive(self, "tokenizer_processes")
        edges = list(self.length_buckets)
        require(all(e > 0 for e in edges) and edges == sorted(set(edges)), "length_buckets",
                f"must be increasing token counts > 0, got {edges}")


@config_dataclass
class ModelConfig:
    """The network (`models/factory.py` maps these onto the backbone's and task's arguments).

    Attributes:
        family: `gpt` (learned positions, pre-LayerNorm, GELU MLP), `llama` (rotary
            positions, RMSNorm, SwiGLU MLP, grouped-query attention, no biases) or `bert`
            (bidirectional encoder with learned positions and a masked-LM head).
        objective: what `task.type: lm` trains: `causal` (next token; gpt, llama) or
            `masked` (BERT's recipe: 15% of the real tokens chosen, of those 80% -> mask,
            10% -> a random token, 10% kept; the loss on the chosen ones; bert). `auto`
            is the family's own; any other pairing is an error.
        num_layers, hidden_dim, num_heads: depth, width and attention heads.
        num_kv_heads: llama's key/value heads (grouped-query attention); must divide
            `num_heads`; None means `num_heads` (plain multi-head attention).
        intermediate_dim: MLP width; None is the family's default (4 * hidden_dim for gpt
            and bert; for llama's SwiGLU 8/3 * hidden_dim rounded up to a multiple of 8,
            about the parameters of a 4x GELU MLP).
        max_sequence_length: the longest window (gpt and bert learn one embedding per
            position; llama's rotary positions have no table but keep the bound).
        rope_max_wavelength: the base of llama's rotary frequencies.
        dropout: dropout rate.
        document_masking: a token attends only to its own document of a packed window.
        tie_embeddings: the output projection is the token embedding; None is the
            family's default (tied for bert, as in BERT; untied for gpt and llama).
    """

    family: Literal["gpt", "llama", "bert"] = "gpt"
    objective: Literal["auto", "causal", "masked"] = "auto"
    num_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 4
    num_kv_heads: int | None = None
    intermediate_dim: int | None = None
    max_sequence_length: int = 512
    rope_max_wavelength: float = 10_000.0
    dropout: float = 0.0
    document_masking: bool = True
    tie_embeddings: bool | None = None

    def __post_init__(self):
        require_positive(self, "num_layers", "hidden_dim", "num_heads", "num_kv_heads",
                         "intermediate_dim", "max_sequence_length", "rope_max_wavelength")
        require(self.hidden_dim % self.num_heads == 0, "hidden_dim",
                f"must be a multiple of model.num_heads ({self.num_heads}), got {self.hidden_dim}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.num_kv_heads is None or self.family == "llama", "num_kv_heads",
                f"is a llama option (model.family is {self.family!r})")
        require(self.num_kv_heads is None or self.num_heads % self.num_kv_heads == 0,
                "num_kv_heads", f"must divide model.num_heads ({self.num_heads}), "
                f"got {self.num_kv_heads}")
        head_dim = self.hidden_dim // self.num_heads
        require(self.family != "llama" or head_dim % 2 == 0, "hidden_dim",
                f"must give llama an even head dim for rotary positions "
                f"(hidden_dim / num_heads = {head_dim})")
        own = FAMILY_OBJECTIVES[self.family]
        require(self.objective in ("auto", own), "objective",
                f"must be {own!r} or 'auto' for model.family {self.family!r} "
                f"(got {self.objective!r})")

    @property
    def training_objective(self) -> str:
        """`causal` or `masked`: the objective `auto` stands for."""
        return FAMILY_OBJECTIVES[self.family] if self.objective == "auto" else self.objective

    @property
    def tied_embeddings(self) -> bool:
        """Whether the output projection is the token embedding (the family's default if unset)."""
        return self.family == "bert" if self.tie_embeddings is None else self.tie_embeddings


# Each family's objective: decoders predict the next token, the encoder masked tokens.
FAMILY_OBJECTIVES = {"gpt": "causal", "llama": "causal", "bert": "masked"}


@config_dataclass
class TaskConfig:
    type: Literal["lm"] = "lm"


@config_dataclass
class TrainConfig:
    """How the train component trains (`components/train.py`, `components/training/`).

    Attributes:
        steps: optimizer steps to take (None: `max_tokens` alone is the budget).
        max_tokens: token budget, counted as token positions (`batch_size` times the
            sequence length per step); with `steps` also set, whichever ends first.
        batch_size: the global batch per optimizer step, whatever the replica count.
        grad_accum_steps: each replica's share of the batch runs as this many micro-batches
            whose gradients are summed before one update (less memory, the same update).
        learning_rate: the peak learning rate.
        schedule: after a linear warm-up over `warmup_steps`: `constant`, `cosine`,
            `linear` (both reach `learning_rate * min_learning_rate_ratio` at the last
            step) or `inverse_sqrt` (`learning_rate * sqrt(warmup / step)`, floored there).
        warmup_steps: steps of linear warm-up; the first step already gets a non-zero rate.
        min_learning_rate_ratio: the decay's floor as a fraction of `learning_rate`.
        optimizer: `sgd`, `momentum` (SGD with momentum), `rmsprop`, `adam`, `adamw`,
            `lion` or `adafactor` (Keras built-ins).
        weight_decay: decoupled weight decay of weight matrices (norms, biases and
            embeddings are left alone); None: 0.01 for adamw and lion, 0 otherwise.
        momentum: the momentum of `momentum`.
        nesterov: Nesterov momentum (`momentum` only).
        beta_1: first-moment decay of adam, adamw and lion.
        beta_2: second-moment decay of adam and adamw, the update interpolation of lion;
            None: 0.95 (adam, adamw) or 0.99 (lion).
        epsilon: the denominator's epsilon of adam, adamw and rmsprop.
        clip_norm: clip the all-reduced gradient to this global norm (None: no clipping).
        precision: `float32`, `mixed_bfloat16`, or `mixed_float16` (with dynamic loss
            scaling); variables stay float32 and the exported model is float32.
        jit_compile: compile each micro-batch's forward and backward pass with XLA.
        steps_per_execution: optimizer steps per compiled call (fewer host round trips).
        strategy: `auto` (TPU if a resolver finds one, mirrored over more than one GPU,
            else default), `default`, `one_device`, `mirrored`, `multi_worker` (TF_CONFIG,
            as Vertex AI sets it) or `tpu`.
        shuffle_buffer: examples in the training shuffle buffer.
        seed: seeds initialization, shuffling and input corruption.
        log_every: steps between progress lines, TensorBoard and CSV rows.
        eval_every: steps between evaluations on the eval split (None: only at the end).
        eval_batches: eval batches per evaluation (the first ones, in file order).
        early_stopping_patience: stop after this many evaluations in a row without an eval
            loss below the best by more than `early_stopping_min_delta` (needs eval_every).
        early_stopping_min_delta: the improvement that counts, in nats.
        checkpoint_every: steps between checkpoints, from which a restarted run resumes
            (None: no checkpoints).
        keep_checkpoints: how many of the newest checkpoints to keep.
        warm_start: initial weights: a model artifact, SavedModel directory or `.keras`
            file, or `latest_pushed` (the newest version in `push.serving_dir`; none yet
            means a fresh start). The tokenizer and the shapes must match.
    """

    steps: int | None = 1000
    max_tokens: int | None = None
    batch_size: int = 32
    grad_accum_steps: int = 1
    learning_rate: float = 1e-3
    schedule: Literal["constant", "cosine", "linear", "inverse_sqrt"] = "cosine"
    warmup_steps: int = 0
    min_learning_rate_ratio: float = 0.1
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam", "adamw", "lion",
                       "adafactor"] = "adamw"
    weight_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float | None = None
    epsilon: float = 1e-8
    clip_norm: float | None = 1.0
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    jit_compile: bool = False
    steps_per_execution: int = 1
    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker",
                      "tpu"] = "auto"
    shuffle_buffer: int = 10_000
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    eval_batches: int = 20
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    checkpoint_every: int | None = 100
    keep_checkpoints: int = 3
    warm_start: str | None = None

    def __post_init__(self):
        require_positive(self, "steps", "max_tokens", "batch_size", "grad_accum_steps",
                         "learning_rate", "epsilon", "clip_norm", "steps_per_execution",
                         "shuffle_buffer", "log_every", "eval_every", "eval_batches",
                         "early_stopping_patience", "checkpoint_every", "keep_checkpoints")
        require(self.steps is not None or self.max_tokens is not None, "steps",
                "set train.steps or train.max_tokens (the training budget), got neither")
        require(self.batch_size % self.grad_accum_steps == 0, "grad_accum_steps",
                f"must divide train.batch_size ({self.batch_size}), got {self.grad_accum_steps}")
        require(self.warmup_steps >= 0 and (self.steps is None or self.warmup_steps < self.steps),
                "warmup_steps", f"must be in [0, train.steps), got {self.warmup_steps}")
        require(0.0 <= self.min_learning_rate_ratio <= 1.0, "min_learning_rate_ratio",
                f"must be in [0, 1], got {self.min_learning_rate_ratio}")
        require(self.weight_decay is None or self.weight_decay >= 0, "weight_decay",
                f"must be >= 0, got {self.weight_decay}")
        for name in ("momentum", "beta_1", "beta_2"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value < 1.0, name, f"must be in [0, 1), got {value}")
        require(not self.nesterov or self.optimizer == "momentum", "nesterov",
                f"is an option of train.optimizer 'momentum' (got {self.optimizer!r})")
        require(self.early_stopping_patience is None or self.eval_every is not None,
                "early_stopping_patience", "needs train.eval_every (evaluations to compare)")
        require(self.early_stopping_min_delta >= 0, "early_stopping_min_delta",
                f"must be >= 0, got {self.early_stopping_min_delta}")
        require(not (self.strategy == "tpu" and self.precision == "mixed_float16"), "precision",
                "must be float32 or mixed_bfloat16 with train.strategy 'tpu' (TPUs compute "
                "in bfloat16), got 'mixed_float16'")
        require(self.warm_start is None or bool(self.warm_start.strip()), "warm_start",
                "must be a path or 'latest_pushed', got ''")


@config_dataclass
class TuningConfig:
    enabled: bool = False


@config_dataclass
class EvaluationConfig:
    """The release gate and what the evaluation reports (`components/evaluate.py`).

    Attributes:
        max_perplexity: value threshold on the overall perplexity (None: no bound).
        max_bits_per_byte_increase: change threshold against the model in service: overall
            bits per byte may worsen by at most this fraction (0.005 = 0.5%).
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
    """Where blessed models go (`components/push.py`).

    Attributes:
        serving_dir: the TF Serving style directory of numbered versions.
        keep_versions: how many of the newest versions to keep.
    """

    serving_dir: str = "serving"
    keep_versions: int = 5

    def __post_init__(self):
        require_positive(self, "keep_versions")
        require(bool(self.serving_dir.strip()), "serving_dir", "must be a directory path, got ''")


# Vertex AI names: a region, a label key or value (lowercase, digits, '_' and '-').
_VERTEX_LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_LABEL_PART = re.compile(r"^[a-z0-9_-]{0,63}$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_CRON_FIELD = re.compile(r"^[A-Za-z0-9*/,?#LW-]+$")


def _require_gcs(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value is None or (value.startswith("gs://") and len(value) > 5), name,
                f"must be a gs:// location, got {value!r}")


def _require_no_space(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value is None or (value != "" and not any(c.isspace() for c in value)), name,
                f"must be a non-empty name without spaces, got {value!r}")


@config_dataclass
class DataflowConfig:
    """How the Beam steps run on Vertex (`vertex.dataflow`); unset locations derive from `vertex`."""

    runner: Literal["DataflowRunner", "DirectRunner"] = "DataflowRunner"
    steps: tuple[str, ...] = ("ingest", "transform", "evaluate")
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    staging_location: str | None = None
    setup_file: str | None = None
    sdk_container_image: str | None = None
    machine_type: str = "n1-standard-4"
    max_num_workers: int = 10
    service_account_email: str | None = None
    extra_args: tuple[str, ...] = ()

    def __post_init__(self):
        _require_gcs(self, "temp_location", "staging_location")
        _require_no_space(self, "project", "setup_file", "sdk_container_image", "machine_type",
                          "service_account_email")
        require(self.region is None or bool(_VERTEX_LOCATION.match(self.region)), "region",
                f"must be a region such as us-central1, got {self.region!r}")
        require(not (self.setup_file and self.sdk_container_image), "setup_file",
                "set either setup_file or sdk_container_image, not both")
        require_positive(self, "max_num_workers")
        require(all(a.startswith("--") for a in self.extra_args), "extra_args",
                f"must be Beam options starting with --, got {list(self.extra_args)}")


@config_dataclass
class VertexMachineConfig:
    """The Vertex training cluster of one step (`vertex.train`, `vertex.tune`).

    One replica is the chief; `replica_count - 1` more are workers with the same machine.
    """

    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None
    accelerator_count: int = 1
    replica_count: int = 1
    tpu_topology: str | None = None
    boot_disk_size_gb: int = 100

    def __post_init__(self):
        _require_no_space(self, "machine_type", "tpu_topology")
        require(self.accelerator_type is None or bool(_ACCELERATOR.match(self.accelerator_type)),
                "accelerator_type",
                f"must be a Vertex accelerator such as NVIDIA_L4 or TPU_V3, got {self.accelerator_type!r}")
        require_positive(self, "accelerator_count", "replica_count")
        require(self.boot_disk_size_gb >= 10, "boot_disk_size_gb",
                f"must be >= 10, got {self.boot_disk_size_gb}")


@config_dataclass
class VertexConfig:
    """Where and how `lmpipe compile/submit/schedule --target vertex` run the pipeline."""

    project: str | None = None
    location: str = "us-central1"
    image: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    labels: tuple[str, ...] = ()
    enable_caching: bool = True
    cpu_limit: str | None = None
    memory_limit: str | None = None
    dataflow: DataflowConfig = field(default_factory=DataflowConfig)
    train: VertexMachineConfig = field(default_factory=VertexMachineConfig)
    tune: VertexMachineConfig = field(default_factory=VertexMachineConfig)

    def __post_init__(self):
        require(bool(_VERTEX_LOCATION.match(self.location)), "location",
                f"must be a region such as us-central1, got {self.location!r}")
        _require_gcs(self, "pipeline_root")
        _require_no_space(self, "project", "image", "cpu_limit", "memory_limit")
        require(self.service_account is None or self.service_account.count("@") == 1,
                "service_account", f"must be a service account email, got {self.service_account!r}")
        for label in self.labels:
            key, sep, value = label.partition("=")
            require(bool(sep and key and key[0].islower() and _LABEL_PART.match(key)
                         and _LABEL_PART.match(value)), "labels",
                    f"must be key=value with lowercase letters, digits, _ or -, got {label!r}")

    def label_dict(self) -> dict[str, str]:
        """The labels as Vertex wants them."""
        return dict(label.split("=", 1) for label in self.labels)


@config_dataclass
class ScheduleConfig:
    """When Vertex AI starts the pipeline (`lmpipe schedule --target vertex`)."""

    cron: str | None = None
    time_zone: str = "UTC"
    start_time: str | None = None
    end_time: str | None = None
    max_concurrent_runs: int = 1
    max_run_count: int | None = None
    allow_queueing: bool = False

    def __post_init__(self):
        fields = (self.cron or "").split()
        require(self.cron is None or (len(fields) == 5 and all(map(_CRON_FIELD.match, fields))),
                "cron", f"must be a cron expression of five fields such as '0 3 * * *', got {self.cron!r}")
        require(_is_time_zone(self.time_zone), "time_zone",
                f"must be an IANA time zone such as Europe/Berlin, got {self.time_zone!r}")
        start, end = _timestamp(self, "start_time"), _timestamp(self, "end_time")
        require(start is None or end is None or end > start, "end_time",
                f"must be after schedule.start_time ({self.start_time}), got {self.end_time}")
        require_positive(self, "max_concurrent_runs", "max_run_count")


def _is_time_zone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _timestamp(section: object, name: str):
    from datetime import datetime

    value = getattr(section, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    require(parsed is not None and parsed.tzinfo is not None, name,
            f"must be an RFC 3339 time with a zone such as 2027-01-01T03:00:00Z, got {value!r}")
    return parsed


@config_dataclass
class LmpipeConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data: DataConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    push: PushConfig = field(default_factory=PushConfig)
    vertex: VertexConfig = field(default_factory=VertexConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self):
        require(self.transform.sequence_length <= self.model.max_sequence_length,
                "transform.sequence_length",
                f"must be <= model.max_sequence_length ({self.model.max_sequence_length}), "
                f"got {self.transform.sequence_length}")
        # With bert, task.type lm means masked-LM pretraining (ModelConfig.objective).
        require(self.model.family != "bert" or self.task.type == "lm", "task.type",
                f"must be 'lm' (masked LM) for model.family 'bert', got {self.task.type!r}")
