"""validate (TFX StatisticsGen + ExampleValidator): transform's statistics -> TFMD
statistics and anomalies, checked before anything is trained on the data.

Each dataset of transform's statistics artifact (each span of `spans.json`, or the whole
corpus without spans, `pipeline/core/contracts/validation.py`) becomes a TFMD
`DatasetFeatureStatistics` (`tfmd.py`). Each `trained` and `replay` span is compared with
the `validation.reference_spans` spans before it, pooled (`checks.py`: domain mix and
length drift, drop-rate and unknown-token-rate jumps, missing and new domains); every
dataset, `reference` spans included, is checked against `validation.schema` (`schema.py`).

With `validation.on_anomaly: stop` an anomaly fails the step with one line (the first
anomaly: its span, statistic and both values); every anomaly is logged before, as a
`[validate] anomaly:` line, and nothing is published. With `warn` they are logged and
published, and the run goes on.
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec


def resolve_schema(config, inputs):
    """The `Schema` artifact of `validation.schema` (its content's hash enters the cache
    key), None without a schema.

    Raises:
        UsageError: the file does not exist.
    """
    import hashlib

    from pipeline.core import files
    from pipeline.core.artifacts import Artifact
    from pipeline.core.errors import UsageError

    path = config.validation.schema
    if path is None:
        return None
    if not files.exists(path):
        raise UsageError(f"config key 'validation.schema': {path} does not exist")
    try:
        digest = hashlib.sha256(files.read_bytes(path)).hexdigest()
    except OSError as err:
        raise UsageError(f"config key 'validation.schema': {path} cannot be read "
                         f"({err.__class__.__name__})") from None
    return Artifact(type="Schema", uri=path, fingerprint=digest)


SPEC = ComponentSpec(
    name="validate",
    module="components.validate",
    inputs={"span_statistics": "Statistics"},
    outputs={"statistics": "ExampleStatistics", "anomalies": "ExampleAnomalies"},
    config=("validation",),
    resolvers={"schema": resolve_schema},
    uses_resolvers=lambda config: config.validation.schema is not None,
)


def run(inputs, outputs, runtime, validation):
    """Write every dataset's statistics and check them.

    Args:
        inputs: `span_statistics` (transform's `statistics`) and `schema`
            (`validation.schema`, or None).
        outputs: `statistics` and `anomalies` directories to write.
        runtime: the run's `Runtime` (its `log`).
        validation: the `ValidationConfig`.

    Returns:
        Properties: the datasets' names; the anomalies' count and kinds.

    Raises:
        UsageError: an anomaly with `validation.on_anomaly: stop`; a bad schema or
            `spans.json`.
    """
    from components.validate import schema, tfmd
    from pipeline.core.contracts import validation as contract
    from pipeline.core.errors import UsageError

    spans = contract.read_spans(inputs["span_statistics"].uri)
    rules = schema.load(inputs["schema"].uri) if inputs.get("schema") else None
    datasets, anomalies = findings(spans, rules, validation, runtime.log)
    for anomaly in anomalies:
        runtime.log(f"[validate] anomaly: {anomaly.message}")
    if anomalies and validation.on_anomaly == "stop":
        raise UsageError(f"{anomalies[0].message} ({len(anomalies)} anomal"
                         f"{'y' if len(anomalies) == 1 else 'ies'} in all, each logged above "
                         "as '[validate] anomaly: ...'; validation.on_anomaly: warn goes on)")
    contract.write_statistics(outputs["statistics"], tfmd.statistics_list(datasets))
    contract.write_anomalies(outputs["anomalies"], [a.to_json() for a in anomalies],
                             tfmd.anomalies_proto(anomalies, rules.proto if rules else None))
    return {"statistics": {"datasets": [name for name, _ in datasets]},
            "anomalies": {"count": len(anomalies),
                          "kinds": sorted({a.kind for a in anomalies})}}


def findings(spans: list[dict], rules, validation, log) -> tuple[list, list]:
    """Profile every dataset, compare each trained or replayed span with its reference,
    check each against the schema.

    Args:
        spans: `read_spans`'s entries.
        rules: the schema's `Rules`, or None.
        validation: the `ValidationConfig`.
        log: where a line per dataset goes (what was measured).

    Returns:
        ([(dataset name, Profile)], [Anomaly]), in span order.
    """
    from components.validate import checks, schema
    from components.validate.profiles import pooled, profile
    from pipeline.core.contracts.validation import dataset_name

    severity = "error" if validation.on_anomaly == "stop" else "warning"
    profiles = [profile(entry["stats"]) for entry in spans]
    datasets, anomalies = [], []
    for i, (entry, current) in enumerate(zip(spans, profiles)):
        name = dataset_name(entry["span"])
        datasets.append((name, current))
        earlier = spans[max(0, i - validation.reference_spans):i]
        compared = entry["role"] != "reference" and bool(earlier)
        subject = checks.Subject(entry["span"], name,
                                 [e["span"] for e in earlier] if compared else [], severity)
        line = f"[validate] {subject.label} ({entry['role']}): {current.documents:,} documents"
        if compared:
            reference = pooled(profiles[max(0, i - validation.reference_spans):i])
            anomalies += checks.against_reference(subject, current, reference, validation)
            line += f"; against {subject.reference_label}: " + ", ".join(
                f"{k} {_shown(v)}" for k, v in checks.measurements(current, reference).items())
        if rules is not None:
            anomalies += schema.violations(checks.Subject(entry["span"], name, [], severity),
                                           current, rules)
        log(line)
    return datasets, anomalies


def _shown(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
