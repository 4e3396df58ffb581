"""The data stage's sections: `data` (ingest), `tokenizer` and `transform`."""

from __future__ import annotations

from typing import Literal

from pipeline.core.config.checks import config_dataclass, require, require_positive


@config_dataclass
class DataConfig:
    """What `ingest` reads and how it cleans and splits it (`components/ingest/cleaning.py`).

    Attributes:
        inputs: files, directories (every supported file below them) or globs, on any
            Beam filesystem (local, gs://); `.txt` and `.jsonl`, each optionally `.gz`
            or `.bz2`. A pattern that matches nothing stops the run (exit status 2).
        text_field: the JSONL field holding the document's text (must be a string; other
            records are dropped as `missing_text_field` or `text_not_string`).
        domain_field: the JSONL field holding the document's domain (a string, or another
            scalar as its JSON text; "" when absent, null, an array, an object or not
            finite, the last three counted as `domain_invalid`). Packing and evaluation
            slice by it.
        max_domains: the domains with the most documents that keep their name in
            packing, evaluation slices and statistics; the others become one domain,
            `(other)`, there (documents keep theirs). Bounds the slices of a domain field
            with a value per document (a URL, an id).
        label_field: classification tasks: the JSONL field holding the label (kept in the
            document's `meta` like every other scalar field; may be `domain_field`).
        target_field: text-to-text tasks: the JSONL field holding the target text (the
            input is `text_field`).
        txt_mode: `.txt` files: a document per line (`line`) or per file (`file`).
        invalid_utf8: a record that is not valid UTF-8 (bad bytes, or a JSON-escaped lone
            surrogate) is dropped (`drop`, reason `invalid_utf8`) or has them replaced by
            U+FFFD (`replace`). A record with a NUL byte or mostly undecodable is `binary`
            and always dropped; a file whose first 8 KiB hold a NUL byte, start with a
            UTF-16/32 byte order mark or are over 20% undecodable is skipped whole
            (`files.binary`, `files.not_utf8`).
        control_chars: `remove` C0/C1 control characters other than tab and line breaks,
            or `keep` them.
        normalization: Unicode normalization, `NFC`, `NFKC` or `none`; the tokenizer
            artifact records it, so serving applies the same form.
        whitespace: `normalize` (CRLF/CR to LF, no trailing spaces or tabs on a line, no
            blank lines at either end, indentation kept), `collapse` (every whitespace
            run becomes one space) or `keep`.
        min_chars: documents shorter than this after cleaning are dropped (`too_short`).
        max_chars: longer documents are split into pieces of at most this many characters
            (cut after a line break where possible; nothing is lost; all pieces stay in
            the split of the whole document).
        dedup: drop exact duplicates of the cleaned text across the whole corpus
            (`duplicate`).
        eval_fraction: share of documents in the eval split, chosen by a salted hash of
            the cleaned text (stable when the corpus grows).
        split_salt: the salt of that hash; changing it reshuffles the split.
        max_dropped_fraction: stop `ingest` (exit status 2, nothing published) when
            cleaning drops more than this share of the records read, duplicates aside: a
            feed gone bad (a renamed field, binary or mis-encoded records) fails the run
            rather than training on what is left. None: no limit.
    """

    inputs: tuple[str, ...]
    text_field: str = "text"
    domain_field: str | None = None
    max_domains: int = 1000
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
    max_dropped_fraction: float | None = None

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
        require_positive(self, "max_domains")
        require(self.max_dropped_fraction is None or 0.0 <= self.max_dropped_fraction < 1.0,
                "max_dropped_fraction", f"must be at least 0 and below 1 (or null), got "
                f"{self.max_dropped_fraction}")
        require(self.min_chars >= 1, "min_chars", f"must be >= 1, got {self.min_chars}")
        require(self.max_chars >= max(self.min_chars, 1000), "max_chars",
                f"must be >= 1000 and >= data.min_chars ({self.min_chars}), got {self.max_chars}")


@config_dataclass
class TokenizerConfig:
    """The tokenizer the `tokenizer` component trains on a sample of the train split.

    Attributes:
        type: `bpe` or `unigram` (SentencePiece with byte fallback: nothing is out of
            vocabulary) or `wordpiece` (the BERT family; unseen characters become [UNK]).
        vocab_size: SentencePiece: exactly this many ids (>= 300: 256 byte pieces plus
            specials); WordPiece: at most this many.
        sample_bytes: the tokenizer trains on a deterministic sample of the train split
            of at most this many UTF-8 bytes, chosen in one streaming pass.
        character_coverage: SentencePiece: share of characters that get their own piece
            (lowered automatically when they would not fit `vocab_size`).
        lower_case: WordPiece only: BERT "uncased" (case folding, accents stripped).
        seed: seeds the sample and SentencePiece's trainer.
    """

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
    """How `transform` tokenizes and packs documents into TFRecord windows.

    Attributes:
        sequence_length: tokens per example window (at most `model.max_sequence_length`).
        gzip: gzip the TFRecord shards (recorded in `feature_spec.json`).
        mix_train_tails: pack each train domain's last partial window together with the
            other domains' remainders (domain `(mixed)`) instead of padding it.
        length_buckets: document-length bucket edges in text tokens, increasing; they
            name the `length_bucket` feature evaluation slices by.
        tokenizer_processes: processes that tokenize inside each transform worker; None
            means every core when Beam runs in one process (DirectRunner `in_memory`),
            else 1 (the runner already runs a worker per core).
    """

    sequence_length: int = 128
    gzip: bool = False
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
