"""`lmpipe runs` (the retraining history) and `lmpipe lineage`: the metadata store for people."""

from __future__ import annotations

import json
import os
import time

from pipeline.core.contracts.documents import STATS_FILE
from pipeline.core.errors import UsageError
from pipeline.core.metadata import MetadataStore

STORE = "metadata.sqlite"
RUNS_HEADER = (f"{'run':<24} {'started (UTC)':<19} {'status':<9} {'spans':>7} "
               f"{'docs train/eval':>15} {'data':>8} {'ppl':>9} {'golden':>9} {'bpb':>7} "
               f"{'task':>10} {'blessed':>7} {'pushed':>7}  executed")
# A downstream task run's headline metric (evaluate's summary for a task): the first it has.
TASK_METRICS = (("eval_accuracy", "acc", ".3f"), ("eval_bleu", "bleu", ".1f"))


def format_runs(root: str, limit: int) -> str:
    """The retraining history under a pipeline root, newest run first.

    One line per run: when it started, its status, the data spans it trained on (`3-7`;
    `-` without spans), the data it read (documents per split and bytes, from its ingest
    artifact), eval perplexity, the golden set's perplexity (`-` without one) and eval bits
    per byte (a language model) or the task's headline metric (`acc=0.912` for classification,
    `bleu=31.2` for text to text), whether the model was blessed, the version it pushed
    (`v2`; `(v1)` when its model was already that version in service; `-` when nothing was
    pushed), and which components executed rather than came from the cache (`failed:NAME`
    for the one that failed).

    Args:
        root: the pipeline root.
        limit: at most this many runs.

    Returns:
        The table, a header line first.
    """
    store = _open(os.path.join(root, STORE), root)
    try:
        lines = [_run_line(row, _steps(store.executions(row["id"])))
                 for row in store.runs(limit)]
    finally:
        store.close()
    return "\n".join([RUNS_HEADER, *lines])


def _steps(executions: list) -> list[str]:
    """The components that executed, and `failed:NAME` for the one that failed."""
    return [e["component"] if e["status"] == "executed" else f"failed:{e['component']}"
            for e in executions if e["status"] in ("executed", "failed")]


def _run_line(row, executed: list[str]) -> str:
    record = json.loads(row["summary"]) if row["summary"] else {}
    components = record.get("components", {})
    metrics = record.get("metrics", {})
    data = run_data(components)
    docs = f"{data['train']}/{data['eval']}" if data else "-"
    size = _bytes(data["bytes"]) if data else "-"
    return (f"{row['id']:<24} {_when(row['started']):<19} {row['status']:<9} "
            f"{span_range(record.get('spans')):>7} {docs:>15} "
            f"{size:>8} {_number(metrics.get('eval_perplexity'), '.2f'):>9} "
            f"{_number(metrics.get('golden_perplexity'), '.2f'):>9} "
            f"{_number(metrics.get('eval_bits_per_byte'), '.3f'):>7} {task_metric(metrics):>10} "
            f"{_flag(metrics.get('blessed')):>7} {pushed_version(components):>7}  "
            f"{','.join(executed) or '-'}")


def span_range(spans: list[int] | None) -> str:
    """`3-7` for consecutive spans, `3,5,6` otherwise, `-` for a run without spans."""
    if not spans:
        return "-"
    if spans == list(range(spans[0], spans[-1] + 1)) and len(spans) > 1:
        return f"{spans[0]}-{spans[-1]}"
    return ",".join(str(span) for span in spans)


def task_metric(metrics: dict) -> str:
    """`acc=0.912` or `bleu=31.2` for a task run's metrics, `-` for a language model's."""
    for key, label, spec in TASK_METRICS:
        if metrics.get(key) is not None:
            return f"{label}={metrics[key]:{spec}}"
    return "-"


def run_data(components: dict) -> dict | None:
    """Documents per split and bytes a run ingested, from its documents artifact.

    Args:
        components: the `components` of a run record.

    Returns:
        {"train", "eval", "bytes"}, or None when the run has no (readable) documents.
    """
    uri = components.get("ingest", {}).get("outputs", {}).get("documents")
    stats = _read_json(os.path.join(uri, STATS_FILE)) if uri else None
    try:
        train, evaluation = stats["splits"]["train"], stats["splits"]["eval"]
        return {"train": int(train["documents"]), "eval": int(evaluation["documents"]),
                "bytes": int(train["bytes"]) + int(evaluation["bytes"])}
    except (KeyError, TypeError, ValueError):
        return None  # not an ingest artifact's statistics (e.g. a test's own data step)


def pushed_version(components: dict) -> str:
    """`vN` for a version this run pushed, `(vN)` for its model already in service, else `-`."""
    push = components.get("push", {})
    uri = push.get("outputs", {}).get("pushed")
    record = _read_json(os.path.join(uri, "push.json")) if uri else None
    if not record or record.get("version") is None:
        return "-"
    new = push.get("status") == "executed" and record.get("pushed") is True
    return f"v{record['version']}" if new else f"(v{record['version']})"


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _flag(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _bytes(count: float) -> str:
    if count < 1000:
        return f"{count:.0f}B"
    for unit in ("kB", "MB", "GB"):
        count /= 1000
        if count < 1000 or unit == "GB":
            break
    return f"{count:.1f}{unit}"


def format_lineage(path: str) -> str:
    """What produced the artifact at (or containing) `path`, and from which inputs.

    A pushed serving version (or a file in one; a serving directory means its latest
    version) is traced through the execution that pushed it, found by the serving path its
    output recorded, in the store of the pipeline root its model card's model lives in (the
    serving directory may be anywhere).

    Args:
        path: an artifact directory, a serving directory or version, or a file inside one.

    Returns:
        The lineage tree, one artifact and its producer per few lines, inputs indented.
    """
    if not path.strip():
        raise UsageError("lineage: the path is empty")  # abspath would make it the cwd
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    version = _served_version(path)
    db = _find_store(path, _card_model_uri(version))
    store = _open(db, path)
    try:
        if version is not None:
            return "\n".join(_version_lines(store, version, db))
        artifact = store.artifact_containing(path)
        if artifact is None:
            raise UsageError(f"{path}: not inside an artifact recorded in {db}")
        return "\n".join(_tree(store.lineage(artifact["id"])))
    finally:
        store.close()


def _served_version(path: str):
    """The serving version (a `serving_dir.Version`) that is or holds `path`, the latest
    one when `path` is a serving directory, or None."""
    from pipeline.core.contracts import serving_dir

    directory = path if os.path.isdir(path) else os.path.dirname(path)
    while True:
        name = os.path.basename(directory)
        if name.isdigit() and os.path.isfile(os.path.join(directory, serving_dir.SAVED_MODEL_FILE)):
            return serving_dir.Version(number=int(name), path=directory,
                                       card=serving_dir.read_card(directory))
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return serving_dir.latest(path) if os.path.isdir(path) else None


def _card_model_uri(version) -> str | None:
    """The model artifact a version's card names, as an absolute path: cards show paths
    relative to the working directory by default (`push.card_paths`), redacted ones not at
    all."""
    model = version.card.get("model") if version is not None else None
    uri = model.get("uri") if isinstance(model, dict) else None
    if not isinstance(uri, str) or not uri or uri.startswith("<") or "://" in uri:
        return None
    return os.path.abspath(uri)


def _version_lines(store: MetadataStore, version, db: str) -> list[str]:
    """The serving version, the push that wrote it, and that push's lineage below."""
    writer = store.writer_of(version.path, version.card.get("run_id"))
    if writer is None:
        raise UsageError(f"{version.path}: serving version {version.number}, but {db} records "
                         f"no push of it")
    return [f"Model {version.path}",
            f"  serving version {version.number}, {_written(writer)}",
            *_tree(store.lineage(writer["id"], depth=1))]


def _tree(entries: list[dict]) -> list[str]:
    lines = []
    for entry in entries:
        indent = "  " * entry["depth"]
        lines.append(f"{indent}{entry['type']} {entry['uri']}")
        producer, written_by = entry["producer"], entry["written_by"]
        if producer is not None and entry["repeated"]:
            lines.append(f"{indent}  (made by {producer['component']} in run "
                         f"{producer['run_id']}, shown above)")
        elif producer is not None:
            lines.extend(indent + "  " + line for line in _producer_lines(producer))
        elif written_by is not None:
            lines.append(f"{indent}  ({_written(written_by)}; "
                         f"lmpipe lineage {entry['uri']} traces it)")
        else:
            lines.append(f"{indent}  (external input, fingerprint {entry['fingerprint'][:16]}"
                         f"{', shown above' if entry['repeated'] else ''})")
    return lines


def _producer_lines(producer: dict) -> list[str]:
    return [f"made by {producer['component']} in run {producer['run_id']} at "
            f"{_when(producer['started'])}, cache key {producer['cache_key'][:16]}",
            *(f"config {section}: {json.dumps(values, sort_keys=True)}"
              for section, values in (producer["config"] or {}).items())]


def _written(writer: dict) -> str:
    return (f"written by {writer['component']} in run {writer['run_id']}, recorded as "
            f"{writer['type']} {writer['uri']}")


def _find_store(path: str, model_uri: str | None = None) -> str:
    """The metadata store above the model a serving version's card names, else above `path`."""
    if model_uri is not None:
        try:
            return _find_store(model_uri)
        except UsageError:
            pass  # the model's root is gone or elsewhere: look above the path itself
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    while True:
        candidate = os.path.join(directory, STORE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            raise UsageError(f"{path}: no {STORE} in this directory or above it")
        directory = parent


def _open(db: str, what: str) -> MetadataStore:
    if not os.path.exists(db):  # a reader never creates a store
        raise UsageError(f"{what}: no pipeline runs recorded here ({db} missing)")
    return MetadataStore(db)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))
