"""The fine-tuning tasks' evaluation report: one HTML page and the confusion matrix PNG.

Every number on the page comes from the metrics document or the blessing it is given,
and its cell names its source as in `report.py` (`data-doc`, `data-path`, `data-value`).
"""

from __future__ import annotations

import html
import io
import json

from pipeline.core import files
from components.evaluate.report import (STYLE, PAGE, failures_section, num_cell, table,
                                          text_cell, verdict_section, fmt, ordered_slices)
from components.evaluate.task_analysis import headline

REPORT_FILE = "report.html"
CONFUSION_PNG = "confusion_matrix.png"
CLASS_METRICS = ("precision", "recall", "f1", "auc", "support")


def write_report(directory: str, *, metrics: dict, verdict: dict, samples: dict, evaluation,
                 labels: list[str]) -> str:
    """Write `report.html` (and for a classifier `confusion_matrix.png`) into `directory`.

    Args:
        directory: the evaluation output directory.
        metrics: the content of metrics.json.
        verdict: the content of blessing.json.
        samples: the content of samples.json.
        evaluation: the `EvaluationConfig` (slice order).
        labels: the label vocabulary ([] for text to text).

    Returns:
        The page's path.
    """
    task = metrics["task"]
    names = headline(task)
    parts = [verdict_section(verdict), _overall(metrics, names), failures_section(verdict)]
    if task == "classification":
        parts += [_classes(metrics, labels), _confusion(directory, metrics)]
    parts += [_slices(metrics, names, evaluation), _excluded(metrics), _samples(samples)]
    page = files.join(directory, REPORT_FILE)
    text = PAGE.format(title=f"lmpipe evaluation ({task})", style=STYLE, body="\n".join(parts))
    files.write_bytes(page, text.encode("utf-8"), "text/html")
    return page


def _overall(metrics: dict, names: tuple[str, ...]) -> str:
    rows = [text_cell(name) + num_cell(metrics["overall"].get(name), "metrics", "overall", name)
            for name in (*names, "example_count")]
    return ("<h2>Headline metrics</h2>\n<p>TFMA over the eval split.</p>\n"
            + table(["metric", "candidate"], rows))


def _classes(metrics: dict, labels: list[str]) -> str:
    rows = []
    for label in labels:
        values = metrics["classes"].get(label, {})
        rows.append(text_cell(label) + "".join(num_cell(values.get(m), "metrics", "classes", label, m)
                                           for m in CLASS_METRICS))
    return ("<h2>Per class</h2>\n<p>One-vs-rest: precision and recall of the argmax "
            "prediction, ROC AUC of the class's probability; support is the class's eval "
            "examples.</p>\n" + table(["label", *CLASS_METRICS], rows))


def _confusion(directory: str, metrics: dict) -> str:
    confusion = metrics.get("confusion") or {}
    labels, matrix = confusion.get("labels", []), confusion.get("matrix", [])
    if not labels:
        return "<h2>Confusion matrix</h2>\n<p>None computed.</p>"
    _confusion_png(directory, labels, matrix)
    rows = [text_cell(label) + "".join(num_cell(matrix[i][j], "metrics", "confusion", "matrix", i, j)
                                   for j in range(len(labels)))
            for i, label in enumerate(labels)]
    return (f"<h2>Confusion matrix</h2>\n<p>Rows: true label; columns: predicted label "
            f"({html.escape(confusion.get('source', ''))}).</p>\n"
            f'<img src="{CONFUSION_PNG}" alt="confusion matrix">\n'
            + table(["true \\ predicted", *labels], rows))


def _confusion_png(directory: str, labels: list[str], matrix: list[list[float]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = 1.5 + 0.55 * len(labels)
    figure = Figure(figsize=(size + 1.5, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = list(range(len(labels)))
    axes.set_xticks(ticks, labels=labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axes.text(j, i, fmt(count), ha="center", va="center",
                      color="white" if count > peak / 2 else "black", fontsize=8)
    axes.set_title("confusion matrix (eval)")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    files.write_bytes(files.join(directory, CONFUSION_PNG), png.getvalue(), "image/png")


def _slices(metrics: dict, names: tuple[str, ...], evaluation) -> str:
    slices = ordered_slices(metrics.get("slices", {}), evaluation)
    if not slices:
        return "<h2>Slices</h2>\n<p>None (or all below evaluation.min_slice_size).</p>"
    columns = (*names, "example_count")
    rows = [text_cell(name) + "".join(num_cell(metrics["slices"][name].get(m), "metrics", "slices",
                                       name, m) for m in columns) for name in slices]
    return "<h2>Slices</h2>\n" + table(["slice", *columns], rows)


def _excluded(metrics: dict) -> str:
    excluded = metrics.get("excluded")
    if not excluded:
        return ""
    return ("<h2>Left out of the eval split</h2>\n<p>Documents the transform could not turn "
            "into examples (no label, a label the train split does not have, no target): "
            f"<code>{html.escape(json.dumps(excluded, sort_keys=True))}</code></p>")


def _samples(samples: dict) -> str:
    if not samples.get("samples"):
        return ""
    rows = [text_cell(s["input"]) + f'<td class="gen">{html.escape(s["completion"])}</td>'
            + text_cell(s["reference"]) for s in samples["samples"]]
    return ("<h2>Samples</h2>\n<p>Greedy completions of the first eval inputs.</p>\n"
            + table(["input", "completion", "reference"], rows))
