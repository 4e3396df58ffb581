"""The data validation artifacts (validate) and the span statistics it reads (transform).

Read from transform's statistics artifact (`documents.py`):
    spans.json   {"spans": [{"span": int, "role": "reference" | "trained" | "replay",
                             "stats": {that span's stats.json}}, ...]}, sorted by span;
                 absent when the run has no spans: then `stats.json` is the one dataset

statistics/ (ExampleStatistics, validate):
    statistics.pb   a serialized TensorFlow Metadata `DatasetFeatureStatisticsList`, one
                    `DatasetFeatureStatistics` per span (`span-00004`) or one for the whole
                    corpus (`corpus`): features `text` (bytes, the length histogram in
                    tokens, counts and rates as custom stats) and `domain` (documents per
                    domain as top values); Facets and TFDV read it
anomalies/ (ExampleAnomalies, validate):
    anomalies.pbtxt  a TensorFlow Metadata `Anomalies` text proto (per feature, one reason
                     per anomaly; drift measurements in `drift_skew_info`)
    anomalies.json   {"anomalies": [{"span" (int, or null for the corpus), "dataset",
                     "kind", "statistic", "value", "reference_value", "threshold",
                     "severity" ("error" | "warning"), "reference_spans", "message",
                     ...}]}: what the evaluation report and other readers use

The kinds: `domain_drift`, `length_drift`, `drop_rate_jump`, `unknown_rate_jump`,
`missing_domain`, `new_domain` (against the reference spans), and `schema_domain`,
`schema_min_documents`, `schema_max_documents` (against `validation.schema`).

Paths go through `pipeline/core/files.py`, so any Beam filesystem (local, gs://) works.
"""

from __future__ import annotations

import json

from pipeline.core import files
from pipeline.core.contracts.documents import SPANS_FILE, read_stats
from pipeline.core.errors import UsageError

STATISTICS_FILE = "statistics.pb"
ANOMALIES_PBTXT = "anomalies.pbtxt"
ANOMALIES_JSON = "anomalies.json"
ROLES = ("reference", "trained", "replay")
# The dataset name of a run without spans, and of a span in the statistics proto.
CORPUS = "corpus"


def dataset_name(span: int | None) -> str:
    """The name of a span's (or, for None, the corpus's) `DatasetFeatureStatistics`."""
    return CORPUS if span is None else f"span-{span:05d}"


def read_spans(statistics_dir: str) -> list[dict]:
    """The datasets of transform's statistics artifact, in span order.

    Args:
        statistics_dir: transform's `statistics` output directory.

    Returns:
        `spans.json`'s entries {"span", "role", "stats"}; without it, one entry
        {"span": None, "role": "trained", "stats": stats.json} for the whole corpus.

    Raises:
        UsageError: `spans.json` is not a list of spans with a known role.
    """
    path = files.join(statistics_dir, SPANS_FILE)
    if not files.exists(path):
        return [{"span": None, "role": "trained", "stats": read_stats(statistics_dir)}]
    content = files.read_json(path)
    spans = content.get("spans") if isinstance(content, dict) else None
    if not isinstance(spans, list) or not all(
            isinstance(s, dict) and isinstance(s.get("span"), int) and s.get("role") in ROLES
            and isinstance(s.get("stats"), dict) for s in spans):
        raise UsageError(f"{path}: expected {{\"spans\": [{{\"span\": int, \"role\": one of "
                         f"{', '.join(ROLES)}, \"stats\": {{...}}}}, ...]}}")
    return sorted(spans, key=lambda s: s["span"])


def write_statistics(directory: str, statistics) -> None:
    """Write a `DatasetFeatureStatisticsList` as `statistics.pb`."""
    files.write_bytes(files.join(directory, STATISTICS_FILE), statistics.SerializeToString())


def read_statistics(directory: str):
    """The `DatasetFeatureStatisticsList` of a statistics artifact."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return statistics_pb2.DatasetFeatureStatisticsList.FromString(
        files.read_bytes(files.join(directory, STATISTICS_FILE)))


def write_anomalies(directory: str, anomalies: list[dict], proto) -> None:
    """Write an anomalies artifact: `anomalies.json` and the `Anomalies` text proto."""
    from google.protobuf import text_format

    files.write_json(files.join(directory, ANOMALIES_JSON), {"anomalies": anomalies})
    files.write_bytes(files.join(directory, ANOMALIES_PBTXT),
                      text_format.MessageToString(proto).encode("utf-8"), "text/plain")


def read_anomalies(directory: str) -> list[dict]:
    """The anomalies of an anomalies artifact (`anomalies.json`), in the order found.

    Raises:
        UsageError: the file is missing or not an object with a list of anomalies.
    """
    path = files.join(directory, ANOMALIES_JSON)
    try:
        content = files.read_json(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: unreadable anomalies ({err.__class__.__name__})") from None
    anomalies = content.get("anomalies") if isinstance(content, dict) else None
    if not isinstance(anomalies, list) or not all(isinstance(a, dict) for a in anomalies):
        raise UsageError(f"{path}: expected {json.dumps({'anomalies': ['{...}']})}")
    return anomalies
