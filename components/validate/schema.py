"""`validation.schema`: a TensorFlow Metadata `Schema` text proto, read and checked.

What a schema may say here (anything else is refused with its name, not ignored):

    feature { name: "domain"  type: BYTES
              string_domain { value: "math" value: "os" }     (or `domain: "NAME"` naming
              distribution_constraints { min_domain_mass: 0.9 }   a top-level string_domain)
    }
    feature { name: "text" type: BYTES }
    string_domain { name: "NAME" value: ... }
    dataset_constraints { min_examples_count: 1000 max_examples_count: 1000000 }

An example is a document. `min_domain_mass` (TFDV's meaning): the share of documents whose
domain must be in the listed domains, 1 unless given. The statistics name the domains
beyond `data.max_domains` `(other)`: a schema allows them by listing that value.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.validate.checks import Anomaly, Subject
from components.validate.profiles import Profile
from pipeline.core.errors import UsageError

FEATURES = {"domain": {"name", "type", "domain", "string_domain", "distribution_constraints"},
            "text": {"name", "type"}}
SCHEMA_FIELDS = {"feature", "string_domain", "dataset_constraints"}
DATASET_FIELDS = {"min_examples_count", "max_examples_count"}
# How many unexpected domains a message names.
NAMED_DOMAINS = 5


@dataclass(frozen=True)
class Rules:
    """What a schema requires of every dataset.

    Attributes:
        domains: the allowed domains (None: any).
        min_domain_mass: the share of documents that must have an allowed domain.
        min_documents, max_documents: bounds of a dataset's documents (None: none).
        proto: the parsed `Schema` (the anomalies proto's baseline).
    """

    domains: frozenset[str] | None
    min_domain_mass: float
    min_documents: int | None
    max_documents: int | None
    proto: object


def load(path: str) -> Rules:
    """Read and check a schema file.

    Args:
        path: `validation.schema`.

    Returns:
        Its `Rules`.

    Raises:
        UsageError: the file is unreadable, not a `Schema` text proto, or says what is not
            checked here.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipeline.core import files

    where = f"validation.schema {path}"
    try:
        text = files.read_bytes(path).decode("utf-8")
        proto = text_format.Parse(text, schema_pb2.Schema())
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{where}: unreadable ({err.__class__.__name__})") from None
    except text_format.ParseError as err:
        raise UsageError(f"{where}: not a TensorFlow Metadata Schema text proto: {err}") from None
    _refuse_unchecked(proto, where)
    domains, mass = _domain_rule(proto, where)
    constraints = proto.dataset_constraints
    return Rules(domains=domains, min_domain_mass=mass,
                 min_documents=(constraints.min_examples_count
                                if constraints.HasField("min_examples_count") else None),
                 max_documents=(constraints.max_examples_count
                                if constraints.HasField("max_examples_count") else None),
                 proto=proto)


def _refuse_unchecked(proto, where: str) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    def refuse(owner: str, fields, allowed: set[str]):
        extra = sorted(f.name for f, _ in fields if f.name not in allowed)
        if extra:
            raise UsageError(f"{where}: {owner}: {', '.join(extra)} is not checked here "
                             f"(supported: {', '.join(sorted(allowed))})")

    refuse("the schema", proto.ListFields(), SCHEMA_FIELDS)
    refuse("dataset_constraints", proto.dataset_constraints.ListFields(), DATASET_FIELDS)
    for feature in proto.feature:
        if feature.name not in FEATURES:
            raise UsageError(f"{where}: feature {feature.name!r} is not a feature of the "
                             f"statistics (they have {', '.join(sorted(FEATURES))})")
        refuse(f"feature {feature.name!r}", feature.ListFields(), FEATURES[feature.name])
        if feature.HasField("type") and feature.type != schema_pb2.BYTES:
            raise UsageError(f"{where}: feature {feature.name!r}: type must be BYTES (a "
                             f"string), got {schema_pb2.FeatureType.Name(feature.type)}")


def _domain_rule(proto, where: str) -> tuple[frozenset[str] | None, float]:
    feature = next((f for f in proto.feature if f.name == "domain"), None)
    if feature is None:
        return None, 1.0
    mass = (feature.distribution_constraints.min_domain_mass
            if feature.distribution_constraints.HasField("min_domain_mass") else 1.0)
    if feature.HasField("string_domain"):
        return frozenset(feature.string_domain.value), mass
    if feature.HasField("domain"):
        named = {d.name: d for d in proto.string_domain}
        if feature.domain not in named:
            raise UsageError(f"{where}: feature 'domain' names string_domain "
                             f"{feature.domain!r}, which the schema does not define")
        return frozenset(named[feature.domain].value), mass
    return None, mass


def violations(subject: Subject, profile: Profile, rules: Rules) -> list[Anomaly]:
    """The anomalies of one dataset against the schema.

    Args:
        subject: the dataset checked (its `references` are empty).
        profile: its profile.
        rules: the schema's `Rules`.

    Returns:
        Unexpected domains (one anomaly naming the largest), then too few or too many
        documents.
    """
    found = []
    if rules.domains is not None and profile.documents:
        unexpected = {d: n for d, n in profile.domains.items() if d not in rules.domains and n}
        inside = 1.0 - sum(profile.share(d) for d in unexpected)
        if unexpected and inside < rules.min_domain_mass:
            ranked = sorted(unexpected, key=lambda d: (-unexpected[d], d))
            named = ", ".join(f"{d!r} ({profile.share(d):.4g})" for d in ranked[:NAMED_DOMAINS])
            more = f" and {len(ranked) - NAMED_DOMAINS} more" if len(ranked) > NAMED_DOMAINS else ""
            found.append(subject.anomaly(
                "schema_domain", "share_in_schema_domains", inside, None, rules.min_domain_mass,
                "validation.schema (feature domain)",
                f"domains outside the schema's string domain: {named}{more}; share of "
                f"documents in it {inside:.4g} < min_domain_mass {rules.min_domain_mass:g}",
                ranked[0]))
    for kind, bound, too in (("schema_min_documents", rules.min_documents, "few"),
                             ("schema_max_documents", rules.max_documents, "many")):
        if bound is None or (profile.documents >= bound if too == "few"
                             else profile.documents <= bound):
            continue
        field = "min_examples_count" if too == "few" else "max_examples_count"
        found.append(subject.anomaly(
            kind, "documents", profile.documents, None, bound,
            f"validation.schema (dataset_constraints.{field})",
            f"too {too} documents: {profile.documents} against the schema's "
            f"dataset_constraints.{field} {bound}"))
    return found
