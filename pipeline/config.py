"""The config tree: one frozen, keyword-only dataclass per section.

`pipeline.yaml` is one instance of `LmpipeConfig`. Each component reads only the sections
it declares (see `components/*.py` `SPEC.config`), and only those enter its cache key.
Checks within a section live in its `__post_init__`; checks across sections live in
`LmpipeConfig.__post_init__`. Field docs are in README.md ("Configuration").
"""

from __future__ import annotations

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
    eval_fraction: float = 0.05
    split_salt: str = "lmpipe"

    def __post_init__(self):
        require(len(self.inputs) > 0, "inputs", "needs at least one path or glob")
        require(0.0 < self.eval_fraction < 1.0, "eval_fraction",
                f"must be between 0 and 1 (exclusive), got {self.eval_fraction}")


@config_dataclass
class TokenizerConfig:
    type: Literal["bpe", "unigram"] = "bpe"
    vocab_size: int = 4000
    sample_bytes: int = 50_000_000
    character_coverage: float = 0.9995
    seed: int = 0

    def __post_init__(self):
        require(self.vocab_size >= 300, "vocab_size",
                f"must be >= 300 (256 byte-fallback pieces plus specials), got {self.vocab_size}")
        require_positive(self, "sample_bytes")
        require(0.9 <= self.character_coverage <= 1.0, "character_coverage",
                f"must be in [0.9, 1.0], got {self.character_coverage}")


@config_dataclass
class TransformConfig:
    sequence_length: int = 128

    def __post_init__(self):
        require(self.sequence_length >= 8, "sequence_length",
                f"must be >= 8, got {self.sequence_length}")


@config_dataclass
class ModelConfig:
    family: Literal["gpt"] = "gpt"
    num_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 4
    intermediate_dim: int | None = None
    max_sequence_length: int = 512
    dropout: float = 0.0

    def __post_init__(self):
        require_positive(self, "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
                         "max_sequence_length")
        require(self.hidden_dim % self.num_heads == 0, "hidden_dim",
                f"must be a multiple of model.num_heads ({self.num_heads}), got {self.hidden_dim}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


@config_dataclass
class TaskConfig:
    type: Literal["lm"] = "lm"


@config_dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: Literal["adamw"] = "adamw"
    weight_decay: float = 0.01
    warmup_steps: int = 0
    clip_norm: float | None = 1.0
    strategy: Literal["auto", "default", "one_device", "mirrored"] = "auto"
    seed: int = 0
    log_every: int = 10
    eval_batches: int = 20

    def __post_init__(self):
        require_positive(self, "steps", "batch_size", "learning_rate", "clip_norm", "log_every",
                         "eval_batches")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(0 <= self.warmup_steps < self.steps, "warmup_steps",
                f"must be in [0, train.steps), got {self.warmup_steps}")


@config_dataclass
class TuningConfig:
    enabled: bool = False


@config_dataclass
class EvaluationConfig:
    max_perplexity: float | None = None
    batch_size: int = 16

    def __post_init__(self):
        require_positive(self, "max_perplexity", "batch_size")


@config_dataclass
class PushConfig:
    serving_dir: str = "serving"
    keep_versions: int = 5

    def __post_init__(self):
        require_positive(self, "keep_versions")


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

    def __post_init__(self):
        require(self.transform.sequence_length <= self.model.max_sequence_length,
                "transform.sequence_length",
                f"must be <= model.max_sequence_length ({self.model.max_sequence_length}), "
                f"got {self.transform.sequence_length}")
