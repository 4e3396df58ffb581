"""validate: TFMD statistics per span, each anomaly kind stopping the step with one line,
`warn` publishing, the schema, and TFDV's distances against an independent computation.

The statistics the stage reads are made by transform's own `summarize` (the `total` of a
language model's stats.json) from counts chosen here, so each test knows its answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from scipy.spatial.distance import jensenshannon
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components import validate
from components.transform.lm import summarize
from components.validate.checks import js_divergence, l_infinity
from pipeline.core.artifacts import Artifact
from pipeline.core.config import ValidationConfig
from pipeline.core.configio import build
from pipeline.core.contracts import validation as contract
from pipeline.core.errors import ConfigError, UsageError

BASE_DOMAINS = {"math": 500, "os": 300, "json": 200}
# Histogram bin k holds documents of 2**(k-1) <= text tokens < 2**k.
BASE_LENGTHS = {4: 200, 5: 400, 6: 300, 7: 100}


def lm_stats(domains=None, lengths=None, read=None, dropped=None, unknown_rate=0.0) -> dict:
    """A language model's stats.json of one span, its `total` made by transform's code."""
    domains, lengths = domains or BASE_DOMAINS, lengths or BASE_LENGTHS
    documents = sum(domains.values())
    assert sum(lengths.values()) == documents
    text_tokens = sum(n * (1 << (k - 1)) for k, n in lengths.items())
    counts = {("documents",): documents, ("text_tokens",): text_tokens,
              ("bytes",): 4 * text_tokens, ("unknown",): round(unknown_rate * text_tokens),
              ("examples",): documents // 4, ("tokens",): text_tokens + 2 * documents,
              ("slots",): text_tokens + 2 * documents}
    counts.update({("length_bin", k): n for k, n in lengths.items()})
    for domain, n in domains.items():
        counts.update({("domain", domain, "documents"): n, ("domain", domain, "tokens"): n,
                       ("domain", domain, "bytes"): n, ("domain", domain, "examples"): n})
    dropped = {"empty": 0, "too_short": 0, "duplicate": 0, "earlier_span": 0, "golden": 0,
               **(dropped or {})}
    read = documents + sum(dropped.values()) if read is None else read
    return {"ingest": {"documents_read": read, "documents_kept": documents, "dropped": dropped},
            "splits": {}, "total": summarize(counts)}


class FakeRuntime:
    run_id, root, beam_args, work_dir = "test", "/nonexistent", (), None

    def __init__(self):
        self.lines = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def run_validate(tmp_path: Path, spans=None, corpus=None, schema: str | None = None,
                 **settings):
    """Run the stage over `spans` [(span, role, stats)] (or a corpus stats.json without
    spans); returns (properties, outputs, runtime)."""
    statistics = tmp_path / "in"
    statistics.mkdir(parents=True, exist_ok=True)
    if spans is not None:
        entries = [{"span": s, "role": role, "stats": stats} for s, role, stats in spans]
        (statistics / contract.SPANS_FILE).write_text(json.dumps({"spans": entries}))
    (statistics / "stats.json").write_text(json.dumps(corpus or lm_stats()))
    inputs = {"span_statistics": Artifact("Statistics", str(statistics), "f"), "schema": None}
    if schema is not None:
        (tmp_path / "schema.pbtxt").write_text(schema)
        settings["schema"] = str(tmp_path / "schema.pbtxt")
        inputs["schema"] = Artifact("Schema", settings["schema"], "s")
    outputs = {name: tmp_path / name for name in ("statistics", "anomalies")}
    for directory in outputs.values():
        directory.mkdir(exist_ok=True)
    runtime = FakeRuntime()
    config = build(ValidationConfig, settings, "validation")
    properties = validate.run(inputs, {k: str(v) for k, v in outputs.items()}, runtime, config)
    return properties, outputs, runtime


def two_spans(current: dict) -> list:
    return [(3, "reference", lm_stats()), (4, "trained", current)]


def test_statistics_proto_and_no_anomaly(tmp_path):
    properties, outputs, runtime = run_validate(
        tmp_path, two_spans(lm_stats(dropped={"empty": 20, "duplicate": 400})))
    assert properties == {"statistics": {"datasets": ["span-00003", "span-00004"]},
                          "anomalies": {"count": 0, "kinds": []}}
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        (outputs["statistics"] / contract.STATISTICS_FILE).read_bytes())
    assert [d.name for d in stats.datasets] == ["span-00003", "span-00004"]
    span = stats.datasets[1]
    assert span.num_examples == 1000
    text, domain = span.features
    assert (text.path.step, domain.path.step) == (["text"], ["domain"])
    assert [(v.value, v.frequency) for v in domain.string_stats.top_values] == [
        ("math", 500), ("os", 300), ("json", 200)]
    assert domain.string_stats.unique == 3
    custom = {c.name: c for c in text.custom_stats}
    # Duplicates are not bad data: 20 dropped of 1,420 read.
    assert custom["drop_rate"].num == pytest.approx(20 / 1420)
    assert custom["dropped/duplicate"].num == 400
    assert custom["documents_read"].num == 1420
    tokens = 200 * 8 + 400 * 16 + 300 * 32 + 100 * 64
    assert custom["text_tokens"].num == tokens
    assert text.string_stats.avg_length == pytest.approx(4 * tokens / 1000)
    assert [(b.low_value, b.high_value, b.sample_count)
            for b in custom["tokens_per_document"].histogram.buckets] == [
        (8, 15, 200), (16, 31, 400), (32, 63, 300), (64, 127, 100)]
    assert contract.read_anomalies(str(outputs["anomalies"])) == []
    text_format.Parse((outputs["anomalies"] / contract.ANOMALIES_PBTXT).read_text(),
                      anomalies_pb2.Anomalies())
    assert any(line.startswith("[validate] span 4 (trained): 1,000 documents; against span 3:")
               for line in runtime.lines)


SCHEMA_DOMAINS = 'feature { name: "domain" type: BYTES string_domain { value: "math" value: "os" } }'

# (what span 4 looks like, settings, schema, the kind, the error's line)
STOPPING = {
    "domain drift": (
        lm_stats(domains={"math": 800, "os": 100, "json": 100}), {}, None, "domain_drift",
        "span 4: domain mix drift (L-infinity distance of the domain shares) 0.3 > "
        "validation.max_domain_drift 0.1 against span 3; largest change: domain 'math' 0.5 "
        "of the documents in span 3, 0.8 now"),
    "length drift": (
        lm_stats(lengths={4: 700, 5: 100, 6: 100, 7: 100}), {}, None, "length_drift",
        "span 4: document length drift (Jensen-Shannon divergence of the length histograms) "
        "0.2134 > validation.max_length_drift 0.05 against span 3; mean tokens per document "
        "16.8 now, 24 in span 3"),
    "drop-rate jump": (
        lm_stats(dropped={"too_short": 250, "duplicate": 100}), {}, None, "drop_rate_jump",
        "span 4: drop rate (documents dropped as bad data / read, duplicates and golden "
        "excluded) 0.1852 against 0 in span 3: up 0.1852 > validation.max_drop_rate_increase "
        "0.05"),
    "unknown-rate jump": (
        lm_stats(unknown_rate=0.03), {}, None, "unknown_rate_jump",
        "span 4: unknown-token rate (per text token) 0.03 against 0 in span 3: up 0.03 > "
        "validation.max_unknown_token_rate_increase 0.01"),
    "missing domain": (
        lm_stats(domains={"math": 550, "os": 450}), {"max_domain_drift": None}, None,
        "missing_domain",
        "span 4: domain 'json' is missing: 0 documents now, share 0.2 of the documents in "
        "span 3 (>= validation.missing_domain_min_share 0.01)"),
    "new domain": (
        lm_stats(domains={**BASE_DOMAINS, "re": 40}, lengths={**BASE_LENGTHS, 8: 40}), {},
        None, "new_domain",
        "span 4: new domain 're': share 0.03846 of the documents now, 0 documents in span 3 "
        "(>= validation.new_domain_min_share 0.01)"),
    "schema domain": (
        lm_stats(), {}, SCHEMA_DOMAINS, "schema_domain",
        "span 3: domains outside the schema's string domain: 'json' (0.2); share of "
        "documents in it 0.8 < min_domain_mass 1"),
    "schema documents": (
        lm_stats(), {}, "dataset_constraints { min_examples_count: 5000 }",
        "schema_min_documents",
        "span 3: too few documents: 1000 against the schema's "
        "dataset_constraints.min_examples_count 5000"),
}


@pytest.mark.parametrize("case", list(STOPPING))
def test_each_anomaly_kind_stops_the_step_with_one_line(tmp_path, case):
    current, settings, schema, kind, line = STOPPING[case]
    with pytest.raises(UsageError) as info:
        run_validate(tmp_path, two_spans(current), schema=schema, **settings)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(line + " (")
    assert "each logged above as '[validate] anomaly: ...'" in message
    # A failing step writes nothing of its outputs.
    assert not any(list((tmp_path / name).iterdir()) for name in ("statistics", "anomalies"))


def test_warn_logs_and_publishes(tmp_path):
    current = lm_stats(domains={"math": 800, "os": 100, "json": 100}, unknown_rate=0.05)
    properties, outputs, runtime = run_validate(tmp_path, two_spans(current),
                                                schema=SCHEMA_DOMAINS, on_anomaly="warn")
    anomalies = contract.read_anomalies(str(outputs["anomalies"]))
    kinds = [(a["span"], a["kind"]) for a in anomalies]
    assert kinds == [(3, "schema_domain"), (4, "domain_drift"), (4, "unknown_rate_jump"),
                     (4, "schema_domain")]
    assert properties["anomalies"] == {"count": 4, "kinds": [
        "domain_drift", "schema_domain", "unknown_rate_jump"]}
    drift = anomalies[1]
    assert drift["value"] == pytest.approx(0.3) and drift["threshold"] == 0.1
    assert (drift["severity"], drift["reference_spans"], drift["domain"]) == ("warning", [3], "math")
    jump = anomalies[2]
    assert (jump["value"], jump["reference_value"]) == (pytest.approx(0.05), 0.0)
    logged = [line for line in runtime.lines if line.startswith("[validate] anomaly: ")]
    assert logged == [f"[validate] anomaly: {a['message']}" for a in anomalies]
    proto = text_format.Parse((outputs["anomalies"] / contract.ANOMALIES_PBTXT).read_text(),
                              anomalies_pb2.Anomalies())
    domain = proto.anomaly_info["domain"]
    assert [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in domain.reason] == [
        "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "COMPARATOR_L_INFTY_HIGH",
        "ENUM_TYPE_UNEXPECTED_STRING_VALUES"]
    assert domain.severity == anomalies_pb2.AnomalyInfo.WARNING
    assert proto.baseline.feature[0].name == "domain"
    measured = proto.drift_skew_info[0].drift_measurements[0]
    assert (measured.value, measured.threshold) == (pytest.approx(0.3), 0.1)
    assert (outputs["statistics"] / contract.STATISTICS_FILE).exists()


def test_without_spans_only_the_schema_is_checked(tmp_path):
    odd = lm_stats(domains={"math": 990, "json": 10}, lengths={4: 10, 5: 990},
                   dropped={"too_short": 5000}, unknown_rate=0.5)
    properties, outputs, _ = run_validate(tmp_path, corpus=odd)
    assert properties["anomalies"]["count"] == 0
    stats = contract.read_statistics(str(outputs["statistics"]))
    assert [(d.name, d.num_examples) for d in stats.datasets] == [("corpus", 1000)]
    with pytest.raises(UsageError, match=r"^corpus: domains outside the schema's string "
                                         r"domain: 'json' \(0.01\); share of documents in it "
                                         r"0.99 < min_domain_mass 1 \(1 anomaly in all"):
        run_validate(tmp_path / "schema", corpus=odd, schema=SCHEMA_DOMAINS)
    lenient = SCHEMA_DOMAINS.replace("} }", "} distribution_constraints { min_domain_mass: 0.98 } }")
    properties, _, _ = run_validate(tmp_path / "lenient", corpus=odd, schema=lenient)
    assert properties["anomalies"]["count"] == 0


def test_thresholds_and_the_pooled_reference_come_from_config(tmp_path):
    shifted = lm_stats(domains={"math": 800, "os": 100, "json": 100})
    properties, _, _ = run_validate(tmp_path / "loose", two_spans(shifted), max_domain_drift=0.31)
    assert properties["anomalies"]["count"] == 0
    with pytest.raises(UsageError, match="0.3 > validation.max_domain_drift 0.29"):
        run_validate(tmp_path / "tight", two_spans(shifted), max_domain_drift=0.29)
    # Span 3 looks like span 4; pooled with span 2 (the base mix) the reference is
    # {math 1300, os 400, json 300}: math's share moves from 0.65 to 0.8.
    spans = [(2, "reference", lm_stats()), (3, "trained", shifted), (4, "trained", shifted)]
    properties, _, _ = run_validate(tmp_path / "one", spans, on_anomaly="warn")
    assert properties["anomalies"]["count"] == 1  # span 3 against span 2 only
    _, outputs, _ = run_validate(tmp_path / "two", spans, on_anomaly="warn", reference_spans=2)
    drifts = contract.read_anomalies(str(outputs["anomalies"]))
    assert [(a["span"], a["reference_spans"]) for a in drifts] == [(3, [2]), (4, [2, 3])]
    assert drifts[1]["value"] == pytest.approx(0.8 - 0.65)
    # A reference span is never compared, only described and checked against the schema.
    properties, _, _ = run_validate(tmp_path / "ref", [(2, "reference", lm_stats()),
                                                       (3, "reference", shifted)])
    assert properties["anomalies"]["count"] == 0


def test_a_task_without_lengths_or_tokens_is_checked_on_what_it_counts(tmp_path):
    def task(domains):
        return {"task": "classification", "ingest": {"documents_read": 100, "dropped": {}},
                "splits": {"train": {"documents": 90, "domains": domains},
                           "eval": {"documents": 10, "domains": {"a": 5, "b": 5}}}}

    properties, outputs, _ = run_validate(tmp_path, [(1, "reference", task({"a": 45, "b": 45})),
                                                     (2, "trained", task({"a": 45, "b": 45}))])
    text = contract.read_statistics(str(outputs["statistics"])).datasets[1].features[0]
    assert {c.name for c in text.custom_stats} == {"documents_read", "drop_rate"}
    with pytest.raises(UsageError, match=r"^span 2: domain mix drift .* 0.4 > "):
        run_validate(tmp_path / "drift", [(1, "reference", task({"a": 45, "b": 45})),
                                          (2, "trained", task({"a": 85, "b": 5}))])


def test_tfdv_distances_against_an_independent_computation():
    assert l_infinity({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}) == ("a", 0.5)
    assert l_infinity({}, {"a": 1}) is None
    p, q = {1: 5, 2: 3, 4: 2}, {1: 1, 3: 6, 4: 3}
    bins = [1, 2, 3, 4]
    expected = jensenshannon([p.get(b, 0) for b in bins], [q.get(b, 0) for b in bins],
                             base=2) ** 2
    assert js_divergence(p, q) == pytest.approx(expected)
    assert js_divergence({1: 4}, {2: 4}) == 1.0
    assert js_divergence(p, p) == 0.0


@pytest.mark.parametrize("schema, error", [
    ('feature { name: "domain" presence { min_fraction: 1 } }',
     "feature 'domain': presence is not checked here (supported: distribution_constraints, "
     "domain, name, string_domain, type)"),
    ('feature { name: "label" }', "feature 'label' is not a feature of the statistics"),
    ('feature { name: "domain" domain: "nope" }', "names string_domain 'nope', which the "
                                                 "schema does not define"),
    ("feature { name: ", "not a TensorFlow Metadata Schema text proto"),
])
def test_a_bad_schema_is_one_line(tmp_path, schema, error):
    with pytest.raises(UsageError) as info:
        run_validate(tmp_path, corpus=lm_stats(), schema=schema)
    assert error in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"validation.schema {tmp_path / 'schema.pbtxt'}: ")


def test_the_schema_is_an_input_whose_content_is_fingerprinted(tmp_path):
    from types import SimpleNamespace

    def resolved(path):
        return validate.resolve_schema(SimpleNamespace(validation=SimpleNamespace(schema=path)),
                                       {})

    assert resolved(None) is None
    with pytest.raises(UsageError, match="'validation.schema': .*missing.pbtxt does not exist"):
        resolved(str(tmp_path / "missing.pbtxt"))
    with pytest.raises(UsageError, match="'validation.schema': .* cannot be read "
                                         r"\(IsADirectoryError\)"):
        resolved(str(tmp_path))
    path = tmp_path / "schema.pbtxt"
    path.write_text(SCHEMA_DOMAINS)
    first = resolved(str(path)).fingerprint
    path.write_text(SCHEMA_DOMAINS.replace('"os"', '"re"'))
    assert resolved(str(path)).fingerprint != first


@pytest.mark.parametrize("key, value", [("max_domain_drift", 1.5), ("reference_spans", 0),
                                        ("on_anomaly", "ignore")])
def test_bad_settings_name_their_key(key, value):
    with pytest.raises(ConfigError, match=f"config key 'validation.{key}'"):
        build(ValidationConfig, {key: value}, "validation")


def test_the_report_lists_the_published_anomalies(tmp_path):
    from components.evaluate import report
    from tests.report_reader import lookup, read_report

    current = lm_stats(domains={"math": 800, "os": 100, "json": 100}, unknown_rate=0.05)
    _, outputs, _ = run_validate(tmp_path, two_spans(current), on_anomaly="warn")
    anomalies = contract.read_anomalies(str(outputs["anomalies"]))
    page = report.write_page(str(tmp_path), "t", [report.data_validation_section(anomalies)])
    cells, text = read_report(page)
    assert "Anomalies found in the data (validation.on_anomaly: warn): 2." in text
    assert anomalies[0]["message"] in text and anomalies[1]["message"] in text
    traced = [c for c in cells if c["data-doc"] == "anomalies" and "data-value" in c]
    assert len(traced) == 5  # value and threshold of each, the jump's reference value
    for cell in traced:
        assert float(cell["data-value"]) == lookup(anomalies, cell["path"])
    assert report.data_validation_section(None) == ""
    assert "No anomaly" in report.data_validation_section([])


def test_a_malformed_spans_file_is_one_line(tmp_path):
    statistics = tmp_path / "in"
    statistics.mkdir()
    (statistics / contract.SPANS_FILE).write_text(json.dumps({"spans": [{"span": 1}]}))
    with pytest.raises(UsageError, match=r"spans.json: expected \{\"spans\": \[\{\"span\": int, "
                                         r"\"role\": one of reference, trained, replay"):
        contract.read_spans(str(statistics))
