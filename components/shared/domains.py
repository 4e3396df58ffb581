"""A bound on the number of domains the data stage keeps apart.

Domains are slices: transform packs each into its own windows (padding each one's last
window, per shard) and evaluation reports metrics per domain. A domain field with a value
per document (a URL, an id) would make each document a slice, eval windows mostly padding
and stats.json grow with the corpus. So ingest ranks the domains by documents over both
splits and keeps the `data.max_domains` largest (ties by name); the rest are counted, packed
and sliced together as `OTHER_DOMAIN`. The documents keep their own domain (a
classification task may read it as the label); ingest's stats.json lists the kept ones,
and transform folds the rest as it reads them.
"""

from __future__ import annotations

OTHER_DOMAIN = "(other)"


def kept_domains(documents: dict[str, int], limit: int) -> set[str]:
    """The `limit` domains with the most documents (ties broken by name).

    Args:
        documents: domain -> documents over all splits.
        limit: `data.max_domains`.

    Returns:
        The domains that keep their name.
    """
    ranked = sorted(documents, key=lambda domain: (-documents[domain], domain))
    return set(ranked[:limit])


def fold_counts(domains: dict[str, dict[str, int]], kept: set[str]) -> dict[str, dict[str, int]]:
    """Per-domain counts with those of the domains not `kept` summed under `OTHER_DOMAIN`.

    Args:
        domains: domain -> {count name: value}.
        kept: the domains listed by name.

    Returns:
        The same counts, sorted by domain; no `OTHER_DOMAIN` entry if nothing was folded.
    """
    folded = {}
    for domain, values in domains.items():
        target = folded.setdefault(domain if domain in kept else OTHER_DOMAIN, {})
        for name, value in values.items():
            target[name] = target.get(name, 0) + value
    return dict(sorted(folded.items()))


def listed_domains(documents_stats: dict) -> frozenset[str] | None:
    """The domains ingest kept by name, or None when it folded none.

    Args:
        documents_stats: ingest's parsed stats.json.
    """
    if not documents_stats.get("domains_folded"):
        return None
    return frozenset(domain for split in documents_stats["splits"].values()
                     for domain in split["domains"]) - {OTHER_DOMAIN}


def slice_name(domain: str, listed: frozenset[str] | None) -> str:
    """A document's domain as transform packs and evaluation slices it.

    Args:
        domain: the document's own domain.
        listed: `listed_domains` of its documents artifact.
    """
    return domain if listed is None or domain in listed else OTHER_DOMAIN
