"""The data stage's sections: `data` (ingest), `tokenizer` and `transform`."""

from __future__ import annotations

from typing import Literal

from pipeline.config.checks import config_dataclass, require, require_positive


@config_dataclass
class DataConfig:
    inputs: tuple[str, ...]
    text_field: str = "text"
    domain_field: str | None = None
    label_field: str | None = None
    target_field: str | None = None
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
        for name in ("label_field", "target_field"):
            require(getattr(self, name) != self.text_field, name,
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
