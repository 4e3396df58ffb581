"""ingest (TFX ExampleGen): raw text files -> cleaned documents split into train and eval.

Input `raw` is resolved from `data.inputs` (files, directories, globs on any Beam
filesystem; text, JSONL, CSV/TSV, Parquet, TFRecord, Arrow and `save_to_disk`
directories, `sources.py`), and `data.bigquery` adds a BigQuery table's or query's rows
(`bigquery.py`). Output `documents/` holds
`train-*.jsonl.gz` and `eval-*.jsonl.gz` shards of `{"text", "domain", "meta"}` records,
cleaned, deduplicated and sorted by content hash, and `stats.json` with every drop counted
by reason and every skipped file (binary, not UTF-8, corrupt) named (see
`pipeline/core/files.py`, `cleaning.py`). The split of a document
depends only on its text and `data.split_salt`.

Input `golden_raw` is resolved from `evaluation.golden_inputs` (None without a golden
set). Output `golden/` holds those documents, cleaned the same way (`golden.py`); a
corpus document with the same text is dropped from both splits (drop reason `golden`).

With data spans (`{SPAN}` in `data.inputs`, `spans.py`) each span is ingested once into
its own cached artifact and `documents/` is a view of the spans the run trains on
(`by_span.py`); a document an earlier span had is dropped (`earlier_span`).
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec

# When nothing is left: the setting behind a drop reason, named when that reason dropped
# the most records, and what to say (formatted with the count `n`, `read` and the config).
_CULPRITS = {
    "missing_text_field": ("text_field", "{n} of {read} records have no field "
                                         "{data.text_field!r}"),
    "text_not_string": ("text_field", "{n} of {read} records have a {data.text_field!r} "
                                      "that is not a string"),
    "too_short": ("min_chars", "{n} of {read} documents are shorter than {data.min_chars} "
                               "characters"),
    "invalid_utf8": ("invalid_utf8", "{n} of {read} records are not UTF-8 "
                                     "(data.invalid_utf8=replace keeps them, bad bytes replaced)"),
}


def resolve_raw(config, inputs):
    """The `RawFiles` artifact for `data.inputs` (its fingerprint enters the cache key);
    with data spans, each span's files and the spans the run trains on (`spans.py`)."""
    from components.ingest.spans import has_spans, resolve_span_files
    from components.ingest.sources import resolve_raw_files

    if has_spans(config.data.inputs):
        return resolve_span_files(config.data)
    return resolve_raw_files(config.data.inputs)


def resolve_golden(config, inputs):
    """The `RawFiles` artifact for `evaluation.golden_inputs`, None without a golden set."""
    from components.ingest.sources import resolve_raw_files

    patterns = config.evaluation.golden_inputs
    return resolve_raw_files(patterns, "evaluation.golden_inputs") if patterns else None


SPEC = ComponentSpec(
    name="ingest",
    module="components.ingest",
    inputs={},
    outputs={"documents": "Documents", "golden": "Documents"},
    config=("data",),
    resolvers={"raw": resolve_raw, "golden_raw": resolve_golden},
)


def run(inputs, outputs, runtime, data):
    """Read, clean and split the raw files into the documents artifact.

    Args:
        inputs: `raw`, the `RawFiles` artifact (properties `files`, `sizes`, `bytes`;
            with data spans also `spans` and `chosen`, and each span is ingested apart,
            `by_span.py`), and `golden_raw`, the golden set's (None without one).
        outputs: `documents` and `golden`, the directories to write.
        runtime: the run's `Runtime` (Beam options in `beam_args`).
        data: the `DataConfig`.

    Returns:
        Small properties of the documents artifacts: per-split counts, and with data spans
        the span numbers trained on (`spans`).

    Raises:
        UsageError: nothing is left after cleaning, a split is empty, or cleaning dropped
            more than `data.max_dropped_fraction` of the records.
    """
    from components.ingest.exclusions import Exclusions
    from pipeline.core.contracts import documents

    raw = inputs["raw"]
    out = outputs["documents"]
    golden_ids = _ingest_golden(inputs.get("golden_raw"), data, outputs["golden"], runtime)
    excluded = Exclusions(dict.fromkeys(golden_ids, "golden"))
    if "spans" in raw.properties:
        from components.ingest.by_span import ingest_spans

        ingest_spans(raw, inputs.get("golden_raw"), data, excluded, out, runtime,
                     ingest_files)
    else:
        ingest_files(list(zip(raw.properties["files"], raw.properties["sizes"])), data,
                     excluded, out, runtime)
    stats = documents.read_stats(out)
    _log_drops(stats, runtime)
    _check_nonempty(stats, data)
    properties = {split: stats["splits"][split]["documents"] for split in documents.SPLITS}
    if "spans" in stats:
        properties["spans"] = stats["chosen"]
    return {"documents": properties, "golden": {documents.GOLDEN_SPLIT: len(golden_ids)}}


def ingest_files(sources: list[tuple[str, int]], data, excluded, out: str, runtime) -> None:
    """Read, clean and split files into a documents artifact in `out`, on Beam.

    Args:
        sources: `(path, size)` of the files.
        data: the `DataConfig`.
        excluded: the documents kept out of both splits (`exclusions.Exclusions`).
        out: the documents directory to write.
        runtime: the run's `Runtime` (Beam options, progress lines).
    """
    import apache_beam as beam

    from components.ingest.beam import InputProgress, build_ingest
    from components.shared import progress
    from pipeline.core.beam import pipeline_options

    runtime.log(f"[ingest] {len(sources)} files, {sum(size for _, size in sources)} bytes")
    with (progress.reporting(runtime.log, "ingest", InputProgress.totals(sources)) as meter,
          beam.Pipeline(options=pipeline_options(runtime.beam_args)) as pipeline):
        build_ingest(pipeline, sources, data, out, excluded, meter)


def _ingest_golden(golden_raw, data, directory: str, runtime) -> frozenset:
    """Write the golden documents artifact; return the ids the corpus must not keep."""
    from components.ingest.golden import read_golden, write_golden
    from pipeline.core.errors import UsageError

    paths = golden_raw.properties["files"] if golden_raw is not None else []
    found, counts = read_golden(paths, data)
    if paths and not found:
        raise UsageError(f"evaluation.golden_inputs: no documents left after cleaning "
                         f"({counts['read']} read; dropped: {_listed(counts['dropped'])})")
    write_golden(directory, found, counts, len(paths))
    if paths:
        runtime.log(f"[ingest] golden set: {len(paths)} files, {len(found)} documents")
    return frozenset(found)


def _log_drops(stats: dict, runtime) -> None:
    runtime.log(f"[ingest] {stats['documents_read']} read, {stats['documents_kept']} kept; "
                f"dropped: {_listed(stats['dropped'])}")
    for skipped in stats["files"]["skipped"]:
        why = "binary" if skipped["reason"] == "binary" else "not UTF-8"
        runtime.log(f"[ingest] skipped {why} file {skipped['path']} (judged by its first "
                    f"bytes)")
    for corrupt in stats["files"]["corrupt"]:
        runtime.log(f"[ingest] skipped the rest of corrupt file {corrupt['path']} "
                    f"({corrupt['error']})")


def _check_nonempty(stats: dict, data) -> None:
    from pipeline.core.errors import UsageError

    if stats["documents_kept"] == 0:
        raise UsageError(_nothing_left(stats, data))
    _check_dropped_share(stats, data)
    for split in ("train", "eval"):
        if stats["splits"][split]["documents"] == 0:
            raise UsageError(f"data.eval_fraction={data.eval_fraction} leaves the {split} split "
                             f"empty ({stats['documents_kept']} documents kept); "
                             f"change data.eval_fraction or add documents")


def _check_dropped_share(stats: dict, data) -> None:
    """Refuse a corpus that cleaning mostly dropped (`data.max_dropped_fraction`)."""
    from pipeline.core.errors import UsageError

    limit, read = data.max_dropped_fraction, stats["documents_read"]
    dropped = {reason: n for reason, n in stats["dropped"].items()
               if n and reason not in ("duplicate", "golden", "earlier_span")}
    total = sum(dropped.values())
    if limit is None or not read or total / read <= limit:
        return
    message = (f"data.max_dropped_fraction: cleaning dropped {total} of {read} records read "
               f"({total / read:.1%}, duplicates aside; the limit is {limit:g}): "
               f"{_listed(dropped)}")
    culprit = _culprit(dropped, read, data)
    raise UsageError(message + (f"; {culprit[1]}" if culprit else ""))


def _nothing_left(stats: dict, data) -> str:
    """The error for a corpus that cleaning emptied, naming the setting most likely at
    fault: the one behind the commonest drop reason, else `data.inputs`."""
    from components.ingest.cleaning import FILE_SKIP_REASONS

    dropped = {reason: n for reason, n in stats["dropped"].items() if n}
    message = (f"no documents left after cleaning ({stats['documents_read']} read; dropped: "
               f"{_listed(dropped)}")
    skipped = [f"{reason}={stats['files'][reason]}" for reason in FILE_SKIP_REASONS
               if stats["files"][reason]]
    skipped += [f"corrupt={len(stats['files']['corrupt'])}"] if stats["files"]["corrupt"] else []
    message += f"; files skipped: {', '.join(skipped)})" if skipped else ")"
    culprit = _culprit(dropped, stats["documents_read"], data)
    if culprit is None:
        return f"data.inputs: {message}"
    key, why = culprit
    return f"data.{key}: {message}: {why}"


def _culprit(dropped: dict, read: int, data) -> tuple[str, str] | None:
    """(the setting, what to say) behind the commonest drop reason, when one is known."""
    commonest = max(dropped, key=dropped.get, default=None)
    if commonest not in _CULPRITS:
        return None
    key, why = _CULPRITS[commonest]
    return key, why.format(n=dropped[commonest], read=read, data=data)


def _listed(dropped: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in dropped.items() if v) or "none"


def summary(outputs: dict) -> dict:
    """`spans` of latest_run.json: the data spans the run trains on (None without)."""
    documents = outputs.get("documents")
    return {"spans": documents.properties.get("spans") if documents else None}
