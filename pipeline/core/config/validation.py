"""`validation`: the checks of the data before it is trained on (`components/validate/`)."""

from __future__ import annotations

from typing import Literal

from pipeline.core.config.checks import config_dataclass, require, require_positive


@config_dataclass
class ValidationConfig:
    """Data validation (TFX StatisticsGen + ExampleValidator): each span's statistics are
    compared with those of the spans before it, and every span (or the whole corpus, without
    spans) with an optional schema. A threshold set to null turns its check off.

    The drift defaults are measured (`python -m bench.validation_drift`, spans cut from the
    demo corpus and transformed alone): spans of the same source (random halves and tenths,
    3,400 and 684 records) differ by an L-infinity distance of 0.006 to 0.035 and a
    Jensen-Shannon divergence of 0.0003 to 0.009; spans of other modules (file-order
    tenths) by 0.13 to 0.78 and 0.005 to 0.021 (their lengths hardly differ); a span whose
    documents are cut to their first paragraph by 0.165 in length. 0.1 and 0.05 sit three
    to five times above the noise of a 684-record span and below those changes. The rate
    defaults bound what the demo never shows: its drop rate and unknown-token rate are 0.

    Attributes:
        on_anomaly: `stop`: an anomaly fails the step (exit status 2, one line naming the
            span, the statistic and both values; every anomaly is logged, nothing is
            published, so train never runs on the data); `warn`: the anomalies are logged
            and published (`anomalies.json`, `anomalies.pbtxt`) and the run goes on; the
            evaluation report lists them.
        reference_spans: how many spans before a trained (or replayed) span are pooled
            as its reference (their counts summed), of those transform described: the
            trained and replayed spans and the one span before the first trained.
        max_domain_drift: the largest L-infinity distance between the span's and the
            reference's domain shares (by documents), as TFDV measures categorical drift:
            the largest change of any one domain's share, 0.1 = ten percentage points.
        max_length_drift: the largest Jensen-Shannon divergence (log base 2, 0 to 1, as
            TFDV computes it) between the span's and the reference's histograms of
            document length in tokens (a language model's statistics only).
        max_drop_rate_increase: the largest increase of the drop rate (documents ingest
            dropped as invalid, empty, too short... over documents read; duplicates and
            golden-set documents are not counted as drops: a repeated crawl or the golden
            set is no sign of bad data), in absolute terms (0.05 = five percentage points).
        max_unknown_token_rate_increase: the largest increase of the share of text tokens
            the tokenizer could not encode (its unknown token), in absolute terms (a
            language model's statistics only).
        missing_domain_min_share: a domain holding at least this share of the reference's
            documents and absent from the span is an anomaly.
        new_domain_min_share: a domain absent from the reference and holding at least this
            share of the span's documents is an anomaly. `(other)` (the domains beyond
            `data.max_domains`) is never missing nor new.
        schema: a TensorFlow Metadata `Schema` text proto every span is checked against
            (null: none): feature `domain`'s string domain (inline, or named in the
            schema's `string_domain` list) lists the allowed domains (its
            `distribution_constraints.min_domain_mass`, default 1, the share of documents
            that must be in it), and `dataset_constraints` `min_examples_count` /
            `max_examples_count` bound the documents of a span. Other constraints are
            refused rather than ignored.
    """

    on_anomaly: Literal["stop", "warn"] = "stop"
    reference_spans: int = 1
    max_domain_drift: float | None = 0.1
    max_length_drift: float | None = 0.05
    max_drop_rate_increase: float | None = 0.05
    max_unknown_token_rate_increase: float | None = 0.01
    missing_domain_min_share: float | None = 0.01
    new_domain_min_share: float | None = 0.01
    schema: str | None = None

    def __post_init__(self):
        require_positive(self, "reference_spans")
        for name in ("max_domain_drift", "max_length_drift", "max_drop_rate_increase",
                     "max_unknown_token_rate_increase", "missing_domain_min_share",
                     "new_domain_min_share"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value <= 1.0, name,
                    f"must be between 0 and 1 (or null: no check), got {value}")
        require(self.schema is None or bool(self.schema.strip()), "schema",
                "must be a path to a Schema text proto (or null), got an empty string")
