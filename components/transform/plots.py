"""The statistics artifact's pictures: the document length histogram and per-domain tokens."""

from __future__ import annotations

import io

from pipeline.core import files
from pipeline.core.contracts import documents

LENGTH_PNG = "length_histogram.png"
DOMAINS_PNG = "domain_tokens.png"
MAX_DOMAINS = 30


def preload() -> None:
    """Import matplotlib (about a second); the transform does this in a thread while its
    pipeline runs, when the main thread mostly waits on the tokenizer processes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401


def _figure_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    # No software/date metadata, so the same statistics give the same bytes.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def length_histogram(statistics: dict) -> bytes:
    """PNG: documents per length bin (text tokens, powers of two), train and eval."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    per_split = {split: {b["max_tokens"]: b["documents"]
                         for b in statistics["splits"][split]["length_histogram"]}
                 for split in documents.SPLITS}
    bins = sorted(set().union(*per_split.values()))
    for offset, split in ((-0.2, "train"), (0.2, "eval")):
        axes.bar([i + offset for i in range(len(bins))],
                 [per_split[split].get(b, 0) for b in bins], width=0.4, label=split)
    axes.set_xticks(range(len(bins)), [f"<{b + 1}" for b in bins], rotation=45)
    axes.set_xlabel("document length (text tokens)")
    axes.set_ylabel("documents")
    axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    return _figure_bytes(figure)


def domain_tokens(statistics: dict) -> bytes:
    """PNG: tokens per domain over both splits, the largest `MAX_DOMAINS` and the rest."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    domains = statistics["total"]["domains"]
    ranked = sorted(((v["tokens"], d) for d, v in domains.items() if v["documents"]),
                    key=lambda item: (-item[0], item[1]))
    shown = ranked[:MAX_DOMAINS]
    rest = sum(tokens for tokens, _ in ranked[MAX_DOMAINS:])
    if rest:
        shown.append((rest, f"{len(ranked) - MAX_DOMAINS} others"))
    figure = Figure(figsize=(8, 0.25 * len(shown) + 1.5))
    axes = figure.subplots()
    axes.barh(range(len(shown)), [tokens for tokens, _ in shown])
    axes.set_yticks(range(len(shown)), [name or "(none)" for _, name in shown])
    axes.invert_yaxis()
    axes.set_xlabel("tokens")
    figure.tight_layout()
    return _figure_bytes(figure)


def write_plots(statistics: dict, directory: str) -> list[str]:
    """Write both pictures into the statistics artifact; returns their file names."""
    files.write_bytes(files.join(directory, LENGTH_PNG), length_histogram(statistics))
    files.write_bytes(files.join(directory, DOMAINS_PNG), domain_tokens(statistics))
    return [LENGTH_PNG, DOMAINS_PNG]
