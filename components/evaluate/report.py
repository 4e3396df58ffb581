"""The evaluation report: one HTML page and its PNG charts, beside metrics.json.

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

from pipeline.core import files
from components.evaluate import objective as objectives, slicing

REPORT_FILE = "report.html"
CHART_METRICS = ("bits_per_byte", "perplexity")
TABLE_METRICS = ("perplexity", "bits_per_byte", "mean_nll", "token_accuracy",
                 "unigram_perplexity", "example_count", "token_count")
# Labels of a masked LM's metrics: they cover the masked tokens only.
_MASKED_LABELS = {"perplexity": "masked-token perplexity", "mean_nll": "masked-token mean_nll",
                  "token_accuracy": "masked-token accuracy",
                  "token_count": "token_count (masked tokens)"}
# Values that are whole numbers are shown with thousands separators, up to this size
# (a float above it is whole only for lack of precision).
_LARGEST_WHOLE = 1e15


def write_report(directory: str, *, metrics: dict, verdict: dict, samples: dict, evaluation) -> str:
    """Write `report.html` and its charts into `directory`.

    Args:
        directory: the evaluation output directory.
        metrics: the content of metrics.json.
        verdict: the content of blessing.json.
        samples: the content of samples.json.
        evaluation: the `EvaluationConfig` (slice order, thresholds shown).

    Returns:
        The page's path.
    """
    slices = ordered_slices(metrics.get("slices", {}), evaluation)
    kind = metrics.get("objective", objectives.CAUSAL)
    charts = [name for name in (_chart(directory, metrics, slices, m) for m in CHART_METRICS
                                if objectives.computes(m, kind)) if name]
    body = "\n".join([
        verdict_section(verdict),
        _headline_section(metrics),
        _compression_section(metrics),
        failures_section(verdict),
        _slices_section(metrics, slices, charts, evaluation),
        _samples_section(samples),
        _settings_section(evaluation),
    ])
    page = files.join(directory, REPORT_FILE)
    text = PAGE.format(title="lmpipe evaluation", style=STYLE, body=body)
    files.write_bytes(page, text.encode("utf-8"), "text/html")
    return page


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
    return f"<td>{html.escape(str(value))}</td>"


def table(header: list[str], rows: list[str]) -> str:
    """An HTML table: escaped header cells over rows of ready-made cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>\n" + "\n".join(f"<tr>{r}</tr>" for r in rows) + "</table>"


def verdict_section(verdict: dict) -> str:
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


def _headline_section(metrics: dict) -> str:
    overall, baseline = metrics["overall"], (metrics.get("baseline") or {}).get("overall")
    comparison = metrics.get("comparison") or {}
    kind = metrics.get("objective", objectives.CAUSAL)
    rows = []
    for name in TABLE_METRICS:
        cells = text_cell(metric_label(name, kind)) + num_cell(overall.get(name), "metrics", "overall", name)
        if baseline is not None:
            change = comparison.get(name, {})
            cells += (num_cell(baseline.get(name), "metrics", "baseline", "overall", name)
                      + num_cell(change.get("change"), "metrics", "comparison", name, "change")
                      + num_cell(change.get("relative_change"), "metrics", "comparison", name,
                             "relative_change"))
        rows.append(cells)
    header = ["metric", "candidate"] + (["baseline", "change", "relative change"]
                                        if baseline is not None else [])
    return ("<h2>Headline metrics</h2>\n<p>TFMA over the eval split, token-weighted.</p>\n"
            + _objective_note(kind) + table(header, rows))


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


def _compression_section(metrics: dict) -> str:
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
                text_cell(failure.get("metric")), text_cell(failure.get("slice")), text_cell(failure.get("kind")),
                text_cell(threshold_text(failure.get("threshold"))),
                *(num_cell(failure[field], "blessing", key, i, field) if field in failure else "<td></td>"
                  for field in ("candidate", "baseline", "value", "relative_change")),
            ]))
        parts.append(f"<h3>{title}</h3>\n" + table(
            ["metric", "slice", "kind", "threshold", "candidate", "baseline",
             "TFMA value (change for a change threshold)", "relative change"], rows))
    return "\n".join(parts)


def threshold_text(threshold) -> str:
    """A TFMA threshold (as JSON) in words."""
    if not threshold:
        return "(none recorded)"
    value = threshold.get("valueThreshold")
    if value is not None:
        bounds = [f">= {value['lowerBound']}" if "lowerBound" in value else "",
                  f"<= {value['upperBound']}" if "upperBound" in value else ""]
        return "value " + " and ".join(b for b in bounds if b)
    change = threshold.get("changeThreshold", {})
    limits = [f"relative {change['relative']:.4%}" if "relative" in change else "",
              f"absolute {change['absolute']}" if "absolute" in change else ""]
    direction = change.get("direction", "").lower().replace("_", " ")
    return f"may not worsen by more than {' or '.join(l for l in limits if l)} ({direction})"


def _slices_section(metrics: dict, slices: list[str], charts: list[str], evaluation) -> str:
    if not slices:
        return ("<h2>Slices</h2>\n<p>No slice reached min_slice_size "
                f"({evaluation.min_slice_size}).</p>")
    baseline = (metrics.get("baseline") or {}).get("slices", {})
    kind = metrics.get("objective", objectives.CAUSAL)
    # The baseline column: bits per byte, or perplexity for a model that has none.
    compared = "bits_per_byte" if objectives.computes("bits_per_byte", kind) else "perplexity"
    rows = []
    for name in slices:
        values = metrics["slices"][name]
        cells = text_cell(name) + "".join(num_cell(values.get(m), "metrics", "slices", name, m)
                                      for m in TABLE_METRICS)
        if metrics.get("baseline") is not None:
            cells += num_cell(baseline.get(name, {}).get(compared), "metrics", "baseline",
                          "slices", name, compared)
        rows.append(cells)
    header = (["slice", *(metric_label(m, kind) for m in TABLE_METRICS)]
              + ([f"baseline {metric_label(compared, kind)}"]
                 if metrics.get("baseline") is not None else []))
    images = "\n".join(f'<img src="{html.escape(c)}" alt="{html.escape(c)}">' for c in charts)
    derived = metrics.get("derived_slice_features") or []
    origin = (f" The examples carry no {', '.join(derived)}: it is derived from each window's "
              "longest document span (evaluation.length_buckets)." if derived else "")
    return (f"<h2>Slices</h2>\n<p>Slices with fewer than {evaluation.min_slice_size} examples "
            f"are not computed.{html.escape(origin)}</p>\n" + images + "\n" + table(header, rows))


def _samples_section(samples: dict) -> str:
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


def _settings_section(evaluation) -> str:
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
