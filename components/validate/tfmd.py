"""Statistics and anomalies as TensorFlow Metadata protos, which Facets and TFDV read.

One `DatasetFeatureStatistics` per dataset (an example is a document):

    text     STRING; string_stats: documents, avg_length (UTF-8 bytes per document);
             custom stats: bytes, text_tokens, unknown_tokens, unknown_token_rate,
             tokens_per_document (a histogram: bin k holds 2**(k-1) <= tokens < 2**k),
             documents_read, drop_rate, dropped/<reason> (ingest's)
    domain   STRING; string_stats: unique, top_values and rank_histogram (documents per
             domain, most first)

What a task's statistics do not count (bytes, tokens) is left out, never written as 0.
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components.validate.checks import Anomaly
from components.validate.profiles import Profile

# kind -> (the feature it is about, None: the dataset; TFDV's anomaly type; its short
# description). TFDV has no type for a rate that rose or a value gone missing: those are
# CUSTOM_VALIDATION.
REASONS = {
    "domain_drift": ("domain", "COMPARATOR_L_INFTY_HIGH", "High L-infinity distance"),
    "length_drift": ("text", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                     "High Jensen-Shannon divergence of the length histogram"),
    "drop_rate_jump": ("text", "CUSTOM_VALIDATION", "Drop rate jumped"),
    "unknown_rate_jump": ("text", "CUSTOM_VALIDATION", "Unknown-token rate jumped"),
    "missing_domain": ("domain", "CUSTOM_VALIDATION", "Missing domain"),
    "new_domain": ("domain", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "New domain"),
    "schema_domain": ("domain", "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
                      "Unexpected string values"),
    "schema_min_documents": (None, "DATASET_LOW_NUM_EXAMPLES", "Low num examples in dataset"),
    "schema_max_documents": (None, "DATASET_HIGH_NUM_EXAMPLES",
                             "High num examples in dataset"),
}
DRIFTS = {"domain_drift": "L_INFTY", "length_drift": "JENSEN_SHANNON_DIVERGENCE"}


def statistics_list(datasets: list[tuple[str, Profile]]):
    """A `DatasetFeatureStatisticsList` of (name, profile) datasets, in order."""
    result = statistics_pb2.DatasetFeatureStatisticsList()
    for name, profile in datasets:
        dataset = result.datasets.add(name=name, num_examples=profile.documents)
        _text_feature(dataset.features.add(), profile)
        _domain_feature(dataset.features.add(), profile)
    return result


def _common(stats, documents: int) -> None:
    common = stats.common_stats
    common.num_non_missing = documents
    common.tot_num_values = documents
    if documents:
        common.min_num_values = common.max_num_values = 1
        common.avg_num_values = 1.0


def _text_feature(feature, profile: Profile) -> None:
    feature.path.step.append("text")
    feature.type = statistics_pb2.FeatureNameStatistics.STRING
    _common(feature.string_stats, profile.documents)
    if profile.bytes is not None and profile.documents:
        feature.string_stats.avg_length = profile.bytes / profile.documents
    numbers = {"bytes": profile.bytes, "text_tokens": profile.text_tokens,
               "unknown_tokens": profile.unknown_tokens,
               "unknown_token_rate": profile.unknown_token_rate,
               "documents_read": profile.documents_read, "drop_rate": profile.drop_rate}
    numbers.update({f"dropped/{reason}": n for reason, n in sorted((profile.dropped or {}).items())})
    for name, value in numbers.items():
        if value is not None:
            feature.custom_stats.add(name=name, num=float(value))
    if profile.lengths is not None:
        histogram = feature.custom_stats.add(name="tokens_per_document").histogram
        histogram.type = statistics_pb2.Histogram.STANDARD
        for (low, high), documents in sorted(profile.lengths.items()):
            histogram.buckets.add(low_value=low, high_value=high, sample_count=documents)


def _domain_feature(feature, profile: Profile) -> None:
    feature.path.step.append("domain")
    feature.type = statistics_pb2.FeatureNameStatistics.STRING
    stats = feature.string_stats
    _common(stats, sum(profile.domains.values()))
    stats.unique = len(profile.domains)
    ranked = sorted(profile.domains, key=lambda d: (-profile.domains[d], d))
    for rank, domain in enumerate(ranked):
        stats.top_values.add(value=domain, frequency=profile.domains[domain])
        stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=domain,
                                         sample_count=profile.domains[domain])


def anomalies_proto(anomalies: list[Anomaly], schema=None):
    """The `Anomalies` proto of a run's findings: one reason per anomaly, under its
    feature (or the dataset), and the drift measured in `drift_skew_info`.

    Args:
        anomalies: the findings, in order.
        schema: the `Schema` checked against, if one (the proto's baseline).
    """
    result = anomalies_pb2.Anomalies()
    if schema is not None:
        result.baseline.CopyFrom(schema)
    for anomaly in anomalies:
        feature, type_name, short = REASONS[anomaly.kind]
        if feature is None:
            info = result.dataset_anomaly_info
        else:
            info = result.anomaly_info[feature]
            if not info.path.step:
                info.path.step.append(feature)
        info.reason.add(type=anomalies_pb2.AnomalyInfo.Type.Value(type_name),
                        short_description=short, description=anomaly.message)
        info.severity = (anomalies_pb2.AnomalyInfo.ERROR if anomaly.severity == "error"
                         else anomalies_pb2.AnomalyInfo.WARNING)
        many = len(info.reason) > 1
        info.short_description = "Multiple errors" if many else short
        info.description = " ".join(r.description for r in info.reason)
        if anomaly.kind in DRIFTS:
            drift = result.drift_skew_info.add()
            drift.path.step.append(feature)
            drift.drift_measurements.add(
                type=anomalies_pb2.DriftSkewInfo.Measurement.Type.Value(DRIFTS[anomaly.kind]),
                value=anomaly.value, threshold=anomaly.threshold)
    return result
