"""What validation compares of a dataset, read from transform's statistics.

A `Profile` holds the counts of one span (or of the corpus, or of several reference spans
pooled): rates and shares are computed from pooled counts, never averaged, so a reference
of two spans weighs each document once. A language model's statistics (`lm.py`
`summarize`) give every count; a fine-tuning task's (`tasks.py`) have no bytes, tokens per
document nor unknown tokens, and what they lack is None and not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.shared.domains import OTHER_DOMAIN
from pipeline.core.contracts.documents import SPLITS

# Ingest's drop reasons that are not counted as drops of bad data: a document seen before
# (in the span, or in an earlier span) or found in the golden eval set.
NOT_BAD_DATA = ("duplicate", "earlier_span", "golden")


@dataclass(frozen=True)
class Profile:
    """The counts validation compares.

    Attributes:
        documents: documents kept (both splits).
        domains: domain -> documents (`(other)` included when ingest folded some).
        bytes: UTF-8 bytes of the kept documents (None: not counted).
        text_tokens: tokens of the kept documents without bos/eos (None: not counted).
        unknown_tokens: those that are the tokenizer's unknown token (None: not counted).
        lengths: (min_tokens, max_tokens) of a length histogram bin -> documents (None:
            not counted); the bins are fixed (powers of two), the same in every span.
        documents_read: records ingest read (None: not counted).
        dropped: ingest's drop reason -> documents.
    """

    documents: int
    domains: dict[str, int]
    bytes: int | None = None
    text_tokens: int | None = None
    unknown_tokens: int | None = None
    lengths: dict[tuple[int, int], int] | None = None
    documents_read: int | None = None
    dropped: dict[str, int] | None = None

    @property
    def bad_drops(self) -> int:
        """Documents dropped as bad data (every reason but `NOT_BAD_DATA`)."""
        return sum(n for reason, n in (self.dropped or {}).items() if reason not in NOT_BAD_DATA)

    @property
    def drop_rate(self) -> float | None:
        """Bad drops over documents read."""
        return self.bad_drops / self.documents_read if self.documents_read else None

    @property
    def unknown_token_rate(self) -> float | None:
        """Unknown tokens over text tokens."""
        if self.unknown_tokens is None or not self.text_tokens:
            return None
        return self.unknown_tokens / self.text_tokens

    @property
    def mean_tokens(self) -> float | None:
        """Text tokens per document."""
        if self.text_tokens is None or not self.documents:
            return None
        return self.text_tokens / self.documents

    def share(self, domain: str) -> float:
        """The domain's share of the documents (0 when absent)."""
        total = sum(self.domains.values())
        return self.domains.get(domain, 0) / total if total else 0.0

    def named_domains(self) -> set[str]:
        """The domains with documents, `(other)` left out (it is not one domain)."""
        return {d for d, n in self.domains.items() if n > 0 and d != OTHER_DOMAIN}


def profile(stats: dict) -> Profile:
    """The profile of one transform `stats.json` (a language model's or a task's).

    Args:
        stats: the parsed stats.json of one span (or of the corpus).

    Returns:
        Its `Profile`.
    """
    ingest = stats.get("ingest") or {}
    read, dropped = ingest.get("documents_read"), dict(ingest.get("dropped") or {})
    total = stats.get("total")
    if total is None:  # a fine-tuning task's: per split only, domains as counts
        splits = [s for name, s in (stats.get("splits") or {}).items() if name in SPLITS]
        domains = {d: n for d, n in _summed([s.get("domains") or {} for s in splits]).items() if n}
        return Profile(documents=sum(s.get("documents", 0) for s in splits), domains=domains,
                       documents_read=read, dropped=dropped)
    lengths = {(b["min_tokens"], b["max_tokens"]): b["documents"]
               for b in total.get("length_histogram", [])}
    return Profile(
        documents=total["documents"],
        # `(mixed)` (train windows of several domains) holds windows, no document.
        domains={d: v["documents"] for d, v in (total.get("domains") or {}).items()
                 if v["documents"]},
        bytes=total.get("bytes"), text_tokens=total.get("text_tokens"),
        unknown_tokens=total.get("unknown_tokens"), lengths=lengths,
        documents_read=read, dropped=dropped)


def pooled(profiles: list[Profile]) -> Profile:
    """Several profiles as one dataset: every count summed (a count one of them lacks is
    lacking in the pool)."""
    def total(name):
        values = [getattr(p, name) for p in profiles]
        return None if any(v is None for v in values) else sum(values)

    def merged(name):
        values = [getattr(p, name) for p in profiles]
        return None if any(v is None for v in values) else _summed(values)

    return Profile(documents=sum(p.documents for p in profiles),
                   domains=_summed([p.domains for p in profiles]),
                   bytes=total("bytes"), text_tokens=total("text_tokens"),
                   unknown_tokens=total("unknown_tokens"), lengths=merged("lengths"),
                   documents_read=total("documents_read"), dropped=merged("dropped"))


def _summed(counts: list[dict]) -> dict:
    result = {}
    for values in counts:
        for key, n in values.items():
            result[key] = result.get(key, 0) + (n["documents"] if isinstance(n, dict) else n)
    return dict(sorted(result.items()))
