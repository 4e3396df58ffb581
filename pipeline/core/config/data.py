"""The data stage's sections: `data` (ingest), `tokenizer` and `transform`."""

from __future__ import annotations

import re
from dataclasses import field
from typing import Literal

from pipeline.core.config.checks import config_dataclass, require, require_positive

# The placeholders of a data span's number and version in a `data.inputs` pattern.
SPAN, VERSION = "{SPAN}", "{VERSION}"


@config_dataclass
class SpansConfig:
    """Which data spans a run trains on, when `data.inputs` patterns carry `{SPAN}`
    (`components/ingest/spans.py`; TFX ExampleGen's range config).

    Attributes:
        latest: the newest this many spans (TFX's rolling range).
        first, last: a fixed range of span numbers, both included (either may be left
            open). None of `latest`, `first`, `last`: every span found.
        replay: the share of each older span's train windows (the spans before the
            chosen ones) that is trained on again beside the chosen spans, chosen by a
            fixed hash of each window: 0.1 replays a tenth of the history and keeps it
            from being forgotten; 0 trains on the chosen spans alone.
    """

    latest: int | None = None
    first: int | None = None
    last: int | None = None
    replay: float = 0.0

    def __post_init__(self):
        require_positive(self, "latest")
        require(self.latest is None or (self.first is None and self.last is None), "latest",
                "is a rolling range: set it, or data.spans.first/last, not both")
        for name in ("first", "last"):
            value = getattr(self, name)
            require(value is None or value >= 0, name, f"must be a span number >= 0, got {value}")
        require(None in (self.first, self.last) or self.first <= self.last, "first",
                f"must be <= data.spans.last ({self.last}), got {self.first}")
        require(0.0 <= self.replay <= 1.0, "replay", f"must be in [0, 1], got {self.replay}")

    @property
    def chooses(self) -> bool:
        """Whether a range is set (else every span found is used)."""
        return (self.latest, self.first, self.last) != (None, None, None)


# BigQuery names: a table as `project:dataset.table`, `project.dataset.table` or
# `dataset.table`; a column as standard SQL names one without quoting.
_BIGQUERY_TABLE = re.compile(r"^([A-Za-z0-9_.-]+[:.])?[A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$")
_BIGQUERY_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@config_dataclass
class BigQueryConfig:
    """A BigQuery table or query that `ingest` reads beside (or instead of) `data.inputs`
    (`components/ingest/bigquery.py`, Beam's `ReadFromBigQuery`). Its columns are named
    by `data.text_field`, `domain_field`, `label_field` and `target_field`, as a file's are.

    Attributes:
        table: the table, `project:dataset.table` or `project.dataset.table` (or
            `dataset.table` in `project`). Set `table` or `query`.
        query: a standard SQL query whose rows are read. The config is the cache key: a
            rerun with the same table or query reuses the documents it read; bound the
            query (a date) or run with `--no-cache` to read new rows.
        columns: a table's columns to read (empty: all). Only these reach the documents'
            `meta`.
        project: the project BigQuery's jobs run in and are billed to (None: `--project`
            of `pipeline.beam_args`, which `vertex.dataflow` sets on Vertex).
        method: `EXPORT` (an export job writes Avro files to `gcs_location`, then Beam
            reads them in parallel) or `DIRECT_READ` (the BigQuery Storage Read API, no
            files).
        gcs_location: EXPORT's gs:// location for the exported files (None:
            `--temp_location` of `pipeline.beam_args`).
    """

    table: str | None = None
    query: str | None = None
    columns: tuple[str, ...] = ()
    project: str | None = None
    method: Literal["EXPORT", "DIRECT_READ"] = "EXPORT"
    gcs_location: str | None = None

    def __post_init__(self):
        require((self.table is None) != (self.query is None), "table",
                "set either data.bigquery.table or data.bigquery.query")
        require(self.table is None or bool(_BIGQUERY_TABLE.match(self.table)), "table",
                f"must be project:dataset.table, project.dataset.table or dataset.table, "
                f"got {self.table!r}")
        require(self.query is None or bool(self.query.strip()), "query", "must not be empty")
        require(not (self.query and self.columns), "columns",
                "choose the columns in data.bigquery.query itself")
        for i, column in enumerate(self.columns):
            require(bool(_BIGQUERY_COLUMN.match(column)), f"columns[{i}]",
                    f"must be a column name (letters, digits, _), got {column!r}")
        require(self.gcs_location is None or self.gcs_location.startswith("gs://"),
                "gcs_location", f"must be a gs:// location, got {self.gcs_location!r}")


@config_dataclass
class DataConfig:
    """What `ingest` reads and how it cleans and splits it (`components/ingest/cleaning.py`).

    Attributes:
        inputs: files, directories (every supported file below them) or globs, on any
            Beam filesystem (local, gs://): `.txt`, `.jsonl`, `.csv` and `.tsv` (each
            optionally `.gz` or `.bz2`), `.parquet`, `.tfrecord` (optionally `.gz`) of
            tf.train.Example, `.arrow`, and `datasets` `save_to_disk` directories (the
            Arrow files their `state.json` lists). A pattern that matches nothing stops
            the run (exit status 2). Required; may be `[]` when `bigquery` is set.
            Data spans: a pattern may hold `{SPAN}` (and `{VERSION}`), a run of digits in
            a directory or file name, as TFX's ExampleGen reads them
            (`data/day-{SPAN}/*.jsonl`, `data/{SPAN}/v{VERSION}/`): each span is ingested
            and transformed once, as its own cached artifact keyed by its files, a
            document an earlier span already had is dropped (`earlier_span`), and of a
            span's versions the highest is read. Either every pattern holds `{SPAN}` or
            none does.
        spans: which spans a run trains on (`SpansConfig`); with no range set, every
            span found.
        bigquery: a BigQuery table or query to read, beside or instead of the files
            (None: none): `data.bigquery.table` or `.query`, and `.columns`, `.project`,
            `.method` (`EXPORT`, `DIRECT_READ`), `.gcs_location`, each described in
            docs/data.md (`BigQueryConfig`).
        text_field: the field holding the document's text: a JSONL field, a column of a
            table (Parquet, Arrow, CSV/TSV header, BigQuery) or a bytes feature of a
            tf.train.Example; the same names serve every format (must be a string; other
            records are dropped as `missing_text_field` or `text_not_string`). A table
            without a named column (this or the three below) stops the run with one
            line naming the file and its columns (exit status 2).
        domain_field: the field holding the document's domain (a string, or another
            scalar as its JSON text; "" when absent, null, an array, an object or not
            finite, the last three counted as `domain_invalid`). Packing and evaluation
            slice by it.
        max_domains: the domains with the most documents that keep their name in
            packing, evaluation slices and statistics; the others become one domain,
            `(other)`, there (documents keep theirs). Bounds the slices of a domain field
            with a value per document (a URL, an id).
        label_field: classification tasks: the field holding the label (kept in the
            document's `meta` like every other scalar field; may be `domain_field`).
        target_field: text-to-text tasks: the field holding the target text (the
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
    bigquery: BigQueryConfig | None = None
    spans: SpansConfig = field(default_factory=SpansConfig)
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
        require(len(self.inputs) > 0 or self.bigquery is not None, "inputs",
                "needs at least one path or glob (or set data.bigquery)")
        with_span = [SPAN in pattern for pattern in self.inputs]
        require(all(with_span) or not any(with_span), "inputs",
                f"either every pattern holds {SPAN} or none does, got {list(self.inputs)}")
        require(any(with_span) or not self.spans.chooses and not self.spans.replay, "spans",
                f"chooses data spans, but no data.inputs pattern holds {SPAN}")
        require(all(VERSION not in p or SPAN in p for p in self.inputs), "inputs",
                f"{VERSION} needs {SPAN} in the same pattern, got {list(self.inputs)}")
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
