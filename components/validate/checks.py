"""The checks of a span against the spans before it, and of every dataset against a schema.

Distances are TFDV's (`tensorflow_data_validation/anomalies/metrics.cc`):

    L-infinity      each side's counts normalized to shares on its own, the largest
                    absolute difference over the union of values (and which value it is)
    Jensen-Shannon  both histograms normalized, M their mean, (KL(P||M) + KL(Q||M)) / 2
                    with log base 2 (so 0 <= JSD <= 1, capped at 1 as TFDV does); the
                    length bins are the same powers of two in every span, so aligning the
                    histograms is taking the union of their bins

An anomaly's `message` is the one line the user sees: the span, the statistic, its value
and the reference's, and the setting it broke.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from components.validate.profiles import Profile


@dataclass(frozen=True)
class Anomaly:
    """One finding (the fields of an `anomalies.json` entry, `contracts/validation.py`).

    Attributes:
        span: the span (None: the corpus of a run without spans).
        dataset: its dataset name (`span-00004`, `corpus`).
        kind: what was found (`domain_drift`, `schema_domain`, ...).
        statistic: what was measured.
        value: its value in the span.
        reference_value: its value in the reference spans (None: not a comparison of
            values, e.g. a distance, or a schema bound).
        threshold: the setting's value it broke.
        setting: the config key (or schema field) of the threshold.
        reference_spans: the spans pooled as the reference ([] for a schema check).
        message: the one line that says it all.
        domain: the domain concerned, if one.
        severity: `error` (the step stops) or `warning` (`validation.on_anomaly: warn`).
    """

    span: int | None
    dataset: str
    kind: str
    statistic: str
    value: float
    reference_value: float | None
    threshold: float
    setting: str
    reference_spans: list[int]
    message: str
    domain: str | None = None
    severity: str = "error"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Subject:
    """What a check is about: the span and its reference.

    Attributes:
        span: the span number (None: the corpus).
        dataset: its dataset name.
        references: the spans pooled as its reference.
        severity: of what is found (`error` or `warning`).
    """

    span: int | None
    dataset: str
    references: list[int]
    severity: str

    @property
    def label(self) -> str:
        return "corpus" if self.span is None else f"span {self.span}"

    @property
    def reference_label(self) -> str:
        spans = self.references
        return f"span {spans[0]}" if len(spans) == 1 else "spans " + ", ".join(map(str, spans))

    def anomaly(self, kind: str, statistic: str, value, reference_value, threshold,
                setting: str, text: str, domain: str | None = None) -> Anomaly:
        """An anomaly of this subject; `text` follows `<span>: ` in its message."""
        return Anomaly(span=self.span, dataset=self.dataset, kind=kind, statistic=statistic,
                       value=value, reference_value=reference_value, threshold=threshold,
                       setting=setting, reference_spans=list(self.references),
                       message=f"{self.label}: {text}", domain=domain,
                       severity=self.severity)


def l_infinity(a: dict[str, int], b: dict[str, int]) -> tuple[str, float] | None:
    """TFDV's L-infinity distance between two categorical distributions.

    Args:
        a, b: value -> count.

    Returns:
        (the value whose share changed most, the distance), or None when a side is empty.
    """
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return None
    changes = {v: abs(a.get(v, 0) / total_a - b.get(v, 0) / total_b) for v in set(a) | set(b)}
    value = max(sorted(changes), key=lambda v: changes[v])
    return value, changes[value]


def js_divergence(p: dict, q: dict) -> float | None:
    """TFDV's Jensen-Shannon divergence (log base 2) between two histograms on the same bins.

    Args:
        p, q: bin -> count (a bin one lacks counts 0 there).

    Returns:
        The divergence in [0, 1], or None when a side is empty.
    """
    total_p, total_q = sum(p.values()), sum(q.values())
    if not total_p or not total_q:
        return None
    bins = sorted(set(p) | set(q))
    pn = [p.get(b, 0) / total_p for b in bins]
    qn = [q.get(b, 0) / total_q for b in bins]
    mean = [(x + y) / 2 for x, y in zip(pn, qn)]

    def kl(xs):
        return sum(x * math.log2(x / m) for x, m in zip(xs, mean) if x > 0)

    return min((kl(pn) + kl(qn)) / 2, 1.0)


def against_reference(subject: Subject, current: Profile, reference: Profile,
                      validation) -> list[Anomaly]:
    """Every check of a span against its (pooled) reference.

    Args:
        subject: the span and its reference spans.
        current: the span's profile.
        reference: the reference's, pooled.
        validation: the `ValidationConfig`.

    Returns:
        The anomalies found, in a fixed order: drift, rates, domains.
    """
    return [*_domain_drift(subject, current, reference, validation),
            *_length_drift(subject, current, reference, validation),
            *_rate_jumps(subject, current, reference, validation),
            *_domain_changes(subject, current, reference, validation)]


def measurements(current: Profile, reference: Profile) -> dict:
    """The distances and rates compared, whatever their thresholds (for the log)."""
    domain = l_infinity(current.domains, reference.domains)
    length = (js_divergence(current.lengths, reference.lengths)
              if current.lengths is not None and reference.lengths is not None else None)
    return {"domain_l_infinity": domain[1] if domain else None, "length_js_divergence": length,
            "drop_rate": current.drop_rate, "reference_drop_rate": reference.drop_rate,
            "unknown_token_rate": current.unknown_token_rate,
            "reference_unknown_token_rate": reference.unknown_token_rate}


def _domain_drift(subject: Subject, current: Profile, reference: Profile, validation):
    limit = validation.max_domain_drift
    found = l_infinity(current.domains, reference.domains)
    if limit is None or found is None or found[1] <= limit:
        return []
    domain, distance = found
    return [subject.anomaly(
        "domain_drift", "domain_l_infinity", distance, None, limit,
        "validation.max_domain_drift",
        f"domain mix drift (L-infinity distance of the domain shares) {distance:.4g} > "
        f"validation.max_domain_drift {limit:g} against {subject.reference_label}; "
        f"largest change: domain {domain!r} {reference.share(domain):.4g} of the documents "
        f"in {subject.reference_label}, {current.share(domain):.4g} now", domain)]


def _length_drift(subject: Subject, current: Profile, reference: Profile, validation):
    limit = validation.max_length_drift
    if limit is None or current.lengths is None or reference.lengths is None:
        return []
    divergence = js_divergence(current.lengths, reference.lengths)
    if divergence is None or divergence <= limit:
        return []
    return [subject.anomaly(
        "length_drift", "length_js_divergence", divergence, None, limit,
        "validation.max_length_drift",
        f"document length drift (Jensen-Shannon divergence of the length histograms) "
        f"{divergence:.4g} > validation.max_length_drift {limit:g} against "
        f"{subject.reference_label}; mean tokens per document {_shown(current.mean_tokens)} "
        f"now, {_shown(reference.mean_tokens)} in {subject.reference_label}")]


def _rate_jumps(subject: Subject, current: Profile, reference: Profile, validation):
    found = []
    for kind, statistic, name, setting in (
            ("drop_rate_jump", "drop_rate", "drop rate (documents dropped as bad data / read, "
             "duplicates and golden excluded)", "max_drop_rate_increase"),
            ("unknown_rate_jump", "unknown_token_rate", "unknown-token rate (per text token)",
             "max_unknown_token_rate_increase")):
        limit = getattr(validation, setting)
        now, before = getattr(current, statistic), getattr(reference, statistic)
        if limit is None or now is None or before is None or now - before <= limit:
            continue
        found.append(subject.anomaly(
            kind, statistic, now, before, limit, f"validation.{setting}",
            f"{name} {now:.4g} against {before:.4g} in {subject.reference_label}: up "
            f"{now - before:.4g} > validation.{setting} {limit:g}"))
    return found


def _domain_changes(subject: Subject, current: Profile, reference: Profile, validation):
    found = []
    limit = validation.missing_domain_min_share
    for domain in sorted(reference.named_domains() - current.named_domains()):
        before = reference.share(domain)
        if limit is not None and before >= limit:
            found.append(subject.anomaly(
                "missing_domain", "domain_share", 0.0, before, limit,
                "validation.missing_domain_min_share",
                f"domain {domain!r} is missing: 0 documents now, share {before:.4g} of the "
                f"documents in {subject.reference_label} (>= "
                f"validation.missing_domain_min_share {limit:g})", domain))
    limit = validation.new_domain_min_share
    for domain in sorted(current.named_domains() - reference.named_domains()):
        now = current.share(domain)
        if limit is not None and now >= limit:
            found.append(subject.anomaly(
                "new_domain", "domain_share", now, 0.0, limit, "validation.new_domain_min_share",
                f"new domain {domain!r}: share {now:.4g} of the documents now, 0 documents in "
                f"{subject.reference_label} (>= validation.new_domain_min_share {limit:g})",
                domain))
    return found


def _shown(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
