"""The evaluation report: one HTML page and its PNG charts, beside metrics.json.

The page is a list of sections; each task type picks its own (`tasks.py`): the verdict,
the headline metrics, the thresholds and the slices are every task type's, the rest (a
language model's compression and samples, a classifier's classes and confusion matrix, a
text-to-text task's completions) its own.

Every number on the page comes from the metrics document, blessing or samples it is given;
a number's cell names its source (`data-doc`, `data-path` as a JSON list of keys, and the
full-precision `data-value`), so a reader or a test can trace it back.
"""

from __future__ import annotations

import html
import io
import json
import math
import numbers

from components.evaluate import objective as objectives, slicing
from pipeline.core import files
from pipeline.core.contracts.blessing import threshold_text

REPORT_FILE = "report.html"
CONFUSION_PNG = "confusion_matrix.png"
CHART_METRICS = ("bits_per_byte", "perplexity")
TABLE_METRICS = ("perplexity", "bits_per_byte", "mean_nll", "token_accuracy",
                 "unigram_perplexity", "example_count", "token_count")
CLASS_METRICS = ("precision", "recall", "f1", "auc", "support")
# Labels of a masked LM's metrics: they cover the masked tokens only.
_MASKED_LABELS = {"perplexity": "masked-token perplexity", "mean_nll": "masked-token mean_nll",
                  "token_accuracy": "masked-token accuracy",
                  "token_count": "token_count (masked tokens)"}
# Values that are whole numbers are shown with thousands separators, up to this size
# (a float above it is whole only for lack of precision).
_LARGEST_WHOLE = 1e15


def write_page(directory: str, title: str, sections: list[str]) -> str:
    """Write `report.html` into `directory`.

    Args:
        directory: the evaluation output directory.
        title: the page's title.
        sections: the page's HTML sections, in order.

    Returns:
        The page's path.
    """
    page = files.join(directory, REPORT_FILE)
    text = PAGE.format(title=title, style=STYLE, body="\n".join(sections))
    files.write_bytes(page, text.encode("utf-8"), "text/html")
    return page


def charts(directory: str, metrics: dict, slices: list[str]) -> list[str]:
    """Write a language model's per-slice bar charts (`CHART_METRICS` that its objective
    computes) into `directory`; return their file names."""
    kind = metrics.get("objective", objectives.CAUSAL)
    return [name for name in (_chart(directory, metrics, slices, m) for m in CHART_METRICS
                              if objectives.computes(m, kind)) if name]


def ordered_slices(slices: dict, evaluation) -> list[str]:
    """Slice names grouped by feature in config order; length buckets in length order."""
    features = list(evaluation.slice_features)

    def key(name: str):
        feature, _, value = name.partition("=")
        group = features.index(feature) if feature in features else len(features)
        start = slicing.bucket_start(value) if feature == slicing.LENGTH_BUCKET else 0
        return (group, start, value)

    return sorted(slices, key=key)


def fmt(value) -> str:
    """How a number is shown: whole numbers (counts, ints or floats) with thousands
    separators, other values to 6 significant digits, never in e-notation for a count."""
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return "n/a" if value is None else html.escape(str(value))
    if not math.isfinite(value):
        return "n/a"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if float(value).is_integer() and 1 <= abs(value) < _LARGEST_WHOLE:
        return f"{int(value):,}"
    return f"{value:.6g}"


def metric_label(name: str, objective: str) -> str:
    """How metric `name` is labelled for a model trained with `objective`."""
    return _MASKED_LABELS.get(name, name) if objective == objectives.MASKED else name


def fmt_relative(value) -> str:
    """How a relative change is shown: a signed percentage."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.3%}"


def shown(value, path: list) -> str:
    """The text of the cell holding `value` found at `path`."""
    return fmt_relative(value) if path and path[-1] == "relative_change" else fmt(value)


def num_cell(value, doc: str, *path) -> str:
    """A table cell holding a number traced to `doc` at `path`."""
    attrs = f' data-doc="{doc}" data-path="{html.escape(json.dumps(list(path)))}"'
    if value is not None:
        attrs += f' data-value="{value!r}"'
    return f'<td class="num"{attrs}>{shown(value, list(path))}</td>'


def text_cell(value) -> str:
    """A table cell holding text."""
    return f"<td>{html.escape(str(value))}</td>"


def table(header: list[str], rows: list[str]) -> str:
    """An HTML table: escaped header cells over rows of ready-made cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>\n" + "\n".join(f"<tr>{r}</tr>" for r in rows) + "</table>"


def verdict_section(verdict: dict) -> str:
    """BLESSED or NOT BLESSED, for which model, against what."""
    blessed = verdict.get("blessed") is True
    baseline = verdict.get("baseline")
    against = (f"compared with version {baseline.get('version')} in service ({baseline.get('uri')})"
               if baseline else "no model in service: value thresholds only")
    candidate = verdict.get("candidate", {})
    return (f'<h1 class="{"blessed" if blessed else "refused"}" id="verdict">'
            f'{"BLESSED" if blessed else "NOT BLESSED"}</h1>\n'
            f"<p>run {html.escape(str(verdict.get('run_id')))}; model "
            f"{html.escape(str(candidate.get('uri')))}; {html.escape(against)}; "
            f"{len(verdict.get('failures', []))} failed threshold(s), "
            f"{len(verdict.get('ignored_failures', []))} ignored on small slices.</p>")


def headline_section(metrics: dict, names: tuple[str, ...], caption: str,
                     part: tuple[str, ...] = (), title: str = "Headline metrics") -> str:
    """The overall metrics `names` of the candidate, and of the baseline beside it if any.

    Args:
        metrics: the content of metrics.json.
        names: the metrics shown, in order.
        caption: the HTML between the heading and the table.
        part: where in metrics.json the document shown is (`("golden",)`: the golden
            set's); the whole of it by default.
        title: the section's heading.

    Returns:
        The section's HTML.
    """
    kind = metrics.get("objective", objectives.CAUSAL)
    for key in part:
        metrics = metrics[key]
    overall, baseline = metrics["overall"], (metrics.get("baseline") or {}).get("overall")
    comparison = metrics.get("comparison") or {}
    rows = []
    for name in names:
        cells = text_cell(metric_label(name, kind)) + num_cell(overall.get(name), "metrics", *part,
                                                               "overall", name)
        if baseline is not None:
            change = comparison.get(name, {})
            cells += (num_cell(baseline.get(name), "metrics", *part, "baseline", "overall", name)
                      + num_cell(change.get("change"), "metrics", *part, "comparison", name,
                                 "change")
                      + num_cell(change.get("relative_change"), "metrics", *part, "comparison",
                                 name, "relative_change"))
        rows.append(cells)
    header = ["metric", "candidate"] + (["baseline", "change", "relative change"]
                                        if baseline is not None else [])
    return f"<h2>{html.escape(title)}</h2>\n" + caption + table(header, rows)


def golden_section(metrics: dict, names: tuple[str, ...]) -> str:
    """The golden set's overall metrics (`evaluation.golden_inputs`); "" without one."""
    if not metrics.get("golden"):
        return ""
    return headline_section(metrics, names, "<p>The golden eval set: the same files on every "
                            "run, never trained on, so that runs compare like with like.</p>\n",
                            part=("golden",), title="Golden set")


def lm_caption(metrics: dict) -> str:
    """What a language model's headline numbers are (token-weighted; a masked LM's over
    the masked tokens only)."""
    kind = metrics.get("objective", objectives.CAUSAL)
    return "<p>TFMA over the eval split, token-weighted.</p>\n" + _objective_note(kind)


def _objective_note(kind: str) -> str:
    if kind != objectives.MASKED:
        return ""
    return (f'<p id="objective" data-objective="{kind}">Objective: masked LM. Perplexity, '
            "mean NLL and accuracy are over the masked tokens only (about 15% of the real "
            "tokens, each predicted from both sides, with the training recipe's corruption "
            "at a fixed seed): not comparable with a causal LM's. Bits per byte is not "
            "computed (n/a), nor gated.</p>\n")


_VARIANT_FIELDS = ("parameters", "int8_weights", "bytes", "variables_bytes",
                   "variables_gzip_bytes")


def compression_section(metrics: dict) -> str:
    """The export judged (float or int8) and, for a distilled model, its teacher's metrics."""
    variant, teacher = metrics.get("variant") or {}, metrics.get("teacher")
    if variant.get("name", "float") == "float" and teacher is None:
        return ""
    # All counts: as floats, `fmt` shows them whole (3,757,400 rather than 3.7574e+06).
    rows = [text_cell(name) + num_cell(float(variant[name]), "metrics", "variant", name)
            for name in _VARIANT_FIELDS if variant.get(name) is not None]
    parts = ["<h2>Compression</h2>",
             f"<p>Judged export: {html.escape(str(variant.get('name')))} "
             f"({html.escape(str(variant.get('directory')))}/, mode "
             f"{html.escape(str(variant.get('mode')))}), sizes in bytes as training "
             "measured them.</p>", table(["", "value"], rows)]
    if teacher is not None and teacher.get("skipped"):
        parts.append(f"<p>Teacher {html.escape(str(teacher.get('uri')))}: not evaluated, "
                     f"{html.escape(teacher['skipped'])}.</p>")
    elif teacher is not None:
        where = ("the baseline's numbers (the same SavedModel)" if teacher["source"] == "baseline"
                 else "TFMA over the same eval split, run for the teacher alone")
        parts.append(f"<p>Distilled from {html.escape(str(teacher.get('uri')))}: {where}; "
                     "a reference only, not part of the gate.</p>")
        rows = []
        for name in TABLE_METRICS:
            row = (teacher.get("comparison") or {}).get(name)
            if row is None:
                continue
            rows.append(text_cell(name) + "".join(
                num_cell(row.get(key), "metrics", "teacher", "comparison", name, key)
                for key in ("candidate", "teacher", "change", "relative_change")))
        parts.append(table(["metric", "candidate", "teacher", "change", "relative change"],
                            rows))
    return "\n".join(parts)


def failures_section(verdict: dict) -> str:
    """The thresholds skipped, failed, and ignored on slices too small to count."""
    parts = ["<h2>Thresholds</h2>"]
    skipped = verdict.get("skipped_thresholds") or []
    if skipped:
        rows = [text_cell(s["setting"]) + text_cell(json.dumps(s["value"])) + text_cell(s["reason"])
                for s in skipped]
        parts.append("<h3>Skipped (not applicable)</h3>\n"
                     + table(["setting", "value", "reason"], rows))
    for key, title in (("failures", "Failed"), ("ignored_failures", "Ignored (slice too small)")):
        failures = verdict.get(key, [])
        if not failures:
            parts.append(f"<p>{title}: none.</p>")
            continue
        rows = []
        for i, failure in enumerate(failures):
            rows.append("".join([
                text_cell(failure.get("metric")),
                text_cell(("golden set, " if failure.get("examples") == "golden" else "")
                          + str(failure.get("slice"))),
                text_cell(failure.get("kind")),
                text_cell(threshold_text(failure.get("threshold"))),
                *(num_cell(failure[field], "blessing", key, i, field) if field in failure else "<td></td>"
                  for field in ("candidate", "baseline", "value", "relative_change")),
            ]))
        parts.append(f"<h3>{title}</h3>\n" + table(
            ["metric", "slice", "kind", "threshold", "candidate", "baseline",
             "TFMA value (change for a change threshold)", "relative change"], rows))
    return "\n".join(parts)


def lm_slices_section(metrics: dict, slices: list[str], chart_files: list[str],
                      evaluation) -> str:
    """A language model's slices: its charts (`charts`), then every `TABLE_METRICS` per
    slice."""
    if not slices:
        return ("<h2>Slices</h2>\n<p>No slice reached min_slice_size "
                f"({evaluation.min_slice_size}).</p>")
    images = "\n".join(f'<img src="{html.escape(c)}" alt="{html.escape(c)}">'
                       for c in chart_files)
    derived = metrics.get("derived_slice_features") or []
    origin = (f" The examples carry no {', '.join(derived)}: it is derived from each window's "
              "longest document span (evaluation.length_buckets)." if derived else "")
    return (f"<h2>Slices</h2>\n<p>Slices with fewer than {evaluation.min_slice_size} examples "
            f"are not computed.{html.escape(origin)}</p>\n" + images + "\n"
            + slices_table(metrics, slices, TABLE_METRICS))


def task_slices_section(metrics: dict, names: tuple[str, ...], evaluation) -> str:
    """A fine-tuning task's slices: its headline metrics and example count per slice."""
    slices = ordered_slices(metrics.get("slices", {}), evaluation)
    if not slices:
        return "<h2>Slices</h2>\n<p>None (or all below evaluation.min_slice_size).</p>"
    return "<h2>Slices</h2>\n" + slices_table(metrics, slices, (*names, "example_count"))


def slices_table(metrics: dict, slices: list[str], columns: tuple[str, ...]) -> str:
    """The metrics `columns` of each slice, and the baseline's on a slice if there is one:
    bits per byte, or perplexity for a model that has none."""
    baseline = (metrics.get("baseline") or {}).get("slices", {})
    kind = metrics.get("objective", objectives.CAUSAL)
    compared = "bits_per_byte" if objectives.computes("bits_per_byte", kind) else "perplexity"
    rows = []
    for name in slices:
        values = metrics["slices"][name]
        cells = text_cell(name) + "".join(num_cell(values.get(m), "metrics", "slices", name, m)
                                      for m in columns)
        if metrics.get("baseline") is not None:
            cells += num_cell(baseline.get(name, {}).get(compared), "metrics", "baseline",
                          "slices", name, compared)
        rows.append(cells)
    header = (["slice", *(metric_label(m, kind) for m in columns)]
              + ([f"baseline {metric_label(compared, kind)}"]
                 if metrics.get("baseline") is not None else []))
    return table(header, rows)


def lm_samples_section(samples: dict) -> str:
    """A language model's continuations of eval document beginnings, with their scores."""
    if samples.get("skipped"):
        return f"<h2>Samples</h2>\n<p>None: {html.escape(samples['skipped'])}.</p>"
    rows = []
    for i, sample in enumerate(samples.get("samples", [])):
        for kind in ("greedy", "sampled"):
            rows.append("".join([
                text_cell(sample["domain"]), text_cell(kind), text_cell(sample["prompt"]),
                f'<td class="gen">{html.escape(sample[kind])}</td>',
                text_cell(sample[f"{kind}_reference"]),
                num_cell(sample[f"{kind}_rouge_l"], "samples", "samples", i, f"{kind}_rouge_l"),
                num_cell(sample[f"{kind}_bleu"], "samples", "samples", i, f"{kind}_bleu"),
            ]))
    summary = samples.get("summary") or {}
    totals = "".join(
        f"<tr>{text_cell(kind)}{num_cell(summary[kind]['rouge_l'], 'samples', 'summary', kind, 'rouge_l')}"
        f"{num_cell(summary[kind]['bleu'], 'samples', 'summary', kind, 'bleu')}</tr>"
        for kind in ("greedy", "sampled") if kind in summary)
    settings = html.escape(json.dumps(samples.get("settings", {}), sort_keys=True))
    return ("<h2>Samples</h2>\n<p>Eval document beginnings and the model's continuations "
            f"(settings {settings}); ROUGE-L F1 and BLEU against the document's true next words."
            "</p>\n" + table(["domain", "decoding", "prompt", "continuation", "true text",
                               "ROUGE-L", "BLEU"], rows)
            + "\n<table><tr><th>decoding</th><th>mean ROUGE-L</th><th>mean BLEU</th></tr>"
            + totals + "</table>")


def classes_section(metrics: dict, labels: list[str]) -> str:
    """A classifier's one-vs-rest metrics of each class."""
    rows = []
    for label in labels:
        values = metrics["classes"].get(label, {})
        rows.append(text_cell(label) + "".join(num_cell(values.get(m), "metrics", "classes", label, m)
                                           for m in CLASS_METRICS))
    return ("<h2>Per class</h2>\n<p>One-vs-rest: precision and recall of the argmax "
            "prediction, ROC AUC of the class's probability; support is the class's eval "
            "examples.</p>\n" + table(["label", *CLASS_METRICS], rows))


def confusion_section(directory: str, metrics: dict) -> str:
    """A classifier's confusion matrix: a table, and `confusion_matrix.png` beside the page."""
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


def excluded_section(metrics: dict) -> str:
    """The eval documents the transform left out (nothing when it left none out)."""
    excluded = metrics.get("excluded")
    if not excluded:
        return ""
    return ("<h2>Left out of the eval split</h2>\n<p>Documents the transform could not turn "
            "into examples (no label, a label the train split does not have, no target): "
            f"<code>{html.escape(json.dumps(excluded, sort_keys=True))}</code></p>")


def completions_section(samples: dict) -> str:
    """A text-to-text task's greedy completions beside their references."""
    if not samples.get("samples"):
        return ""
    rows = [text_cell(s["input"]) + f'<td class="gen">{html.escape(s["completion"])}</td>'
            + text_cell(s["reference"]) for s in samples["samples"]]
    return ("<h2>Samples</h2>\n<p>Greedy completions of the first eval inputs.</p>\n"
            + table(["input", "completion", "reference"], rows))


def data_validation_section(anomalies: list[dict] | None) -> str:
    """What the validate step found in the data this model was trained on.

    Args:
        anomalies: `read_anomalies` of validate's `anomalies` output (published with
            `validation.on_anomaly: warn`, or when there was none), None without that input.

    Returns:
        The section's HTML; "" without the input.
    """
    if anomalies is None:
        return ""
    if not anomalies:
        return "<h2>Data validation</h2>\n<p>No anomaly in the data.</p>"
    rows = []
    for i, anomaly in enumerate(anomalies):
        span = anomaly.get("span")
        rows.append("".join([
            text_cell("corpus" if span is None else span), text_cell(anomaly.get("kind")),
            text_cell(anomaly.get("statistic")),
            *(num_cell(anomaly.get(field), "anomalies", i, field)
              for field in ("value", "reference_value", "threshold")),
            text_cell(anomaly.get("setting")), text_cell(anomaly.get("message"))]))
    return ("<h2>Data validation</h2>\n<p>Anomalies found in the data "
            f"(validation.on_anomaly: warn): {len(anomalies)}.</p>\n"
            + table(["span", "kind", "statistic", "value", "reference value", "threshold",
                     "setting", "finding"], rows))


def settings_section(evaluation) -> str:
    """The `evaluation` section as configured."""
    from pipeline.core.configio import to_dict

    rows = [text_cell(k) + text_cell(json.dumps(v)) for k, v in to_dict(evaluation).items()]
    return "<h2>Settings (evaluation section)</h2>\n" + table(["key", "value"], rows)


def _chart(directory: str, metrics: dict, slices: list[str], metric: str) -> str | None:
    """A horizontal bar chart of `metric` per slice (candidate, and baseline if any)."""
    if not slices:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    baseline = (metrics.get("baseline") or {}).get("slices")
    candidate = [_bar(metrics["slices"][s].get(metric)) for s in slices]
    figure = Figure(figsize=(7, 0.45 * len(slices) + 1.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(slices)))
    height = 0.4 if baseline is not None else 0.7
    axes.barh([p - (height / 2 if baseline is not None else 0) for p in positions], candidate,
              height=height, label="candidate", color="#3366cc")
    if baseline is not None:
        values = [_bar(baseline.get(s, {}).get(metric)) for s in slices]
        axes.barh([p + height / 2 for p in positions], values, height=height, label="baseline",
                  color="#aaaaaa")
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_yticks(positions, labels=slices)
    axes.invert_yaxis()
    axes.set_xlabel(metric)
    axes.set_title(f"{metric} by slice")
    figure.tight_layout()
    name = f"slices_{metric}.png"
    png = io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    files.write_bytes(files.join(directory, name), png.getvalue(), "image/png")
    return name


def _bar(value) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.gen { background: #f4f8ff; }
h1.blessed { color: #1a7f37; } h1.refused { color: #c62828; }
img { display: block; margin: 0.5em 0; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body>
{body}
</body></html>
"""
