"""ingest, one data span at a time (`spans.py` says what a span is).

Each span is ingested once, into its own cached documents artifact under
`<root>/ingest-spans/` (`pipeline/core/artifacts.py` `reuse_or_make`), keyed by ingest's
code, the `data` settings (its span range aside), the golden set, the span's files and the
key of the span before it: a document an earlier span already had is dropped there
(`earlier_span`), so a span's documents depend on every earlier span, and a new span
leaves every earlier one's artifact as it was. Each span's artifact also lists its
document ids (`ids.txt.gz`), which is all a later span needs of it.

The run's documents artifact is a view of the spans it trains on: their shards,
hard-linked (copied where links are impossible) as `<split>-s<span>-<shard>`, and a
`stats.json` that adds up their counts and lists the spans (`spans`, `chosen`).
"""

from __future__ import annotations

import hashlib
import json

from components.ingest import cleaning
from components.ingest.exclusions import IDS_FILE, Exclusions, write_ids
from components.shared import counts, shards
from pipeline.core import artifacts, files
from pipeline.core.contracts import documents

OWNER = "ingest-spans"


def ingest_spans(raw, golden_raw, data, excluded: Exclusions, out: str, runtime,
                 ingest_files) -> None:
    """Ingest every span the raw artifact lists that is not cached yet; write the view.

    Args:
        raw: the `RawFiles` artifact of a run with spans (`spans.resolve_span_files`).
        golden_raw: the golden set's `RawFiles` artifact, or None.
        data: the `DataConfig`.
        excluded: the golden set's documents; each span is ingested with the ids of the
            spans before it added.
        out: the run's documents directory.
        runtime: the run's `Runtime`.
        ingest_files: function(sources, data, excluded, out, runtime) that ingests files
            into a documents directory (`ingest_files` in `__init__.py`).
    """
    base = _base_key(data, golden_raw)
    previous, done = "", []
    for span in raw.properties["spans"]:
        key = hashlib.sha256(f"{base}|{previous}|{span['fingerprint']}".encode()).hexdigest()

        def make(directory, span=span):
            return _ingest_span(span, data, excluded, directory, runtime, ingest_files)

        directory, _, reused = artifacts.reuse_or_make(runtime.root, OWNER, key, make)
        runtime.log(f"[ingest] span {span['span']}: {'cached' if reused else 'ingested'} "
                    f"({directory})")
        excluded = excluded.with_file(files.join(directory, IDS_FILE), "earlier_span")
        previous = key
        done.append({"span": span["span"], "version": span["version"], "reused": reused,
                     "uri": files.join(directory, "documents"), "key": key})
    write_view(out, done, raw.properties["chosen"])


def _base_key(data, golden_raw) -> str:
    """What every span's key shares: ingest's code, the settings, the golden set."""
    from pipeline.core.component import code_version
    from pipeline.core.configio import to_dict

    settings = to_dict(data)
    settings.pop("spans")  # which spans a run trains on does not change a span's documents
    settings.pop("inputs")  # a span is keyed by its own files
    return hashlib.sha256(json.dumps([code_version("components.ingest"), settings,
                                      golden_raw.fingerprint if golden_raw else None],
                                     sort_keys=True).encode()).hexdigest()


def _ingest_span(span: dict, data, excluded: Exclusions, directory: str, runtime,
                 ingest_files) -> dict:
    out = files.join(directory, "documents")
    runtime.log(f"[ingest] span {span['span']}" + (f" version {span['version']}"
                                                   if span["version"] is not None else ""))
    ingest_files(list(zip(span["files"], span["sizes"])), data, excluded, out, runtime)
    stats = documents.read_stats(out)
    ids = []
    for split in documents.SPLITS:
        for path in documents.split_paths(out, stats, split):
            ids += [cleaning.document_id_of_bytes(json.loads(line)["text"].encode("utf-8"))
                    for line in shards.read_jsonl_gz_lines(path)]
    write_ids(files.join(directory, IDS_FILE), ids)
    return {"span": span["span"], "documents": len(ids)}


def write_view(out: str, spans: list[dict], chosen: list[int]) -> None:
    """The run's documents artifact: the chosen spans' shards and their summed counts.

    Args:
        out: the directory to write.
        spans: each span ingested or reused: `span`, `version`, `uri` (its documents),
            `reused`, `key`.
        chosen: the span numbers the run trains on.
    """
    merged, listed = None, []
    for span in spans:
        stats = documents.read_stats(span["uri"])
        listed.append({"span": span["span"], "version": span["version"], "uri": span["uri"],
                       "key": span["key"], "reused": span["reused"],
                       "documents": {split: stats["splits"][split]["documents"]
                                     for split in documents.SPLITS}})
        if span["span"] not in chosen:
            continue
        for split in documents.SPLITS:
            names = stats["splits"][split]["shards"]
            stats["splits"][split]["shards"] = [documents.span_view_name(name, span["span"])
                                                for name in names]
            for name, target in zip(names, stats["splits"][split]["shards"]):
                files.link(files.join(span["uri"], name), files.join(out, target))
        merged = stats if merged is None else counts.add_up(merged, stats)
    files.write_json(files.join(out, documents.STATS_FILE),
                     {**merged, "spans": listed, "chosen": chosen})
