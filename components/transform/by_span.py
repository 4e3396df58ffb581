"""transform, one data span at a time (a language model's; `components/ingest/spans.py`
says what a span is).

Each span's documents (ingest's cached span artifact) are transformed once, into a cached
examples-and-statistics artifact under `<root>/transform-spans/`, keyed by transform's code,
its settings, the tokenizer's content (not its artifact: a retrain that copies the
tokenizer of the model in service has the same tokenizer, and keeps every span's examples)
and the span's documents. The run's examples artifact is a view:

    train-s<span>-*, eval-s<span>-*   the shards of the spans the run trains on
                                      (hard-linked where the filesystem allows)
    replay-s<span>-*                  with `data.spans.replay`, the train shards of the
                                      spans before them; the trainer keeps that share of
                                      their windows (`components/train/data.py`)
    golden-*                          the golden set's examples (`evaluation.golden_inputs`)
    feature_spec.json                 every split's shards and examples

and its statistics artifact holds the trained spans' statistics added up (`stats.json`)
and each transformed span's own (`spans.json`: `span`, `role` trained, replay or
reference, `stats`): the span just before the first trained one is transformed as the
`reference` the validation compares the new data with.
"""

from __future__ import annotations

import hashlib
import json

from pipeline.core import artifacts, files
from pipeline.core.artifacts import Artifact
from pipeline.core.contracts import documents, examples

OWNER = "transform-spans"
REPLAY_SPLIT = "replay"


def transform_spans(inputs, outputs, runtime, data, transform, task, documents_stats: dict,
                    transform_documents) -> dict:
    """Transform each span the run needs that is not cached yet; write the view.

    Args:
        inputs, outputs, runtime, data, transform, task: as for the stage's `run`.
        documents_stats: the documents view's `stats.json` (its `spans` and `chosen`).
        transform_documents: the stage's function that transforms documents shards into an
            examples and a statistics directory (`__init__.py`).

    Returns:
        The output properties (see the stage's `run`).
    """
    from components.transform.beam import split_sources

    base = _base_key(inputs, data, transform, task)
    roles = span_roles([s["span"] for s in documents_stats["spans"]], documents_stats["chosen"],
                       data.spans.replay > 0)
    made = []
    for span in documents_stats["spans"]:
        if span["span"] not in roles:
            continue
        stats = documents.read_stats(span["uri"])

        def make(directory, span=span, stats=stats):
            span_inputs = {**inputs, "documents": Artifact("Documents", span["uri"], span["key"])}
            return transform_documents(span_inputs, _output_dirs(directory), runtime, data,
                                       transform, task, split_sources(span["uri"], stats), stats)

        key = hashlib.sha256(f"{base}|{span['key']}".encode()).hexdigest()
        directory, _, reused = artifacts.reuse_or_make(runtime.root, OWNER, key, make)
        runtime.log(f"[transform] span {span['span']} ({roles[span['span']]}): "
                    f"{'cached' if reused else 'transformed'} ({directory})")
        made.append({"span": span["span"], "role": roles[span["span"]], "dir": directory})
    golden = _golden(inputs, runtime, base, data, transform, task, transform_documents)
    return write_view(outputs, made, golden, data.spans.replay, runtime)


def span_roles(numbers: list[int], chosen: list[int], replay: bool) -> dict[int, str]:
    """span -> why the run transforms it: `trained`; `replay` (every earlier span, with
    `data.spans.replay`); else `reference` for the one span just before the first trained
    (the data validation compares the new data with it)."""
    roles = {n: "trained" for n in chosen}
    earlier = [n for n in numbers if n < chosen[0]]
    if replay:
        roles.update({n: REPLAY_SPLIT for n in earlier})
    elif earlier:
        roles[earlier[-1]] = "reference"
    return roles


def _base_key(inputs, data, transform, task) -> str:
    """What every span's key shares: transform's code, its settings, the tokenizer's and
    the labels' content."""
    from pipeline.core.component import code_version
    from pipeline.core.configio import to_dict

    settings = to_dict(data)
    settings.pop("spans")
    settings.pop("inputs")
    return hashlib.sha256(json.dumps(
        [code_version("components.transform"), settings, to_dict(transform), to_dict(task),
         content_digest(inputs["tokenizer"].uri)], sort_keys=True).encode()).hexdigest()


def content_digest(directory: str) -> str:
    """A hash of every file's name and bytes below `directory`."""
    digest = hashlib.sha256()
    for meta in files.files_under(directory):
        digest.update(meta.path[len(directory):].encode())
        digest.update(files.read_bytes(meta.path))
    return digest.hexdigest()


def _output_dirs(directory: str) -> dict[str, str]:
    import os

    outputs = {name: files.join(directory, name) for name in ("examples", "statistics")}
    for path in outputs.values():
        os.makedirs(path, exist_ok=True)
    return outputs


def _golden(inputs, runtime, base: str, data, transform, task,
            transform_documents) -> str | None:
    """The golden set's examples (cached like a span's), their directory; None without."""
    golden = inputs.get("golden")
    stats = documents.read_stats(golden.uri) if golden is not None else None
    if stats is None or not stats["documents_kept"]:
        return None
    sources = {documents.GOLDEN_SPLIT: documents.split_paths(golden.uri, stats,
                                                             documents.GOLDEN_SPLIT)}

    def make(directory):
        return transform_documents(inputs, _output_dirs(directory), runtime, data, transform,
                                   task, sources, stats)

    key = hashlib.sha256(f"{base}|golden|{content_digest(golden.uri)}".encode()).hexdigest()
    return artifacts.reuse_or_make(runtime.root, OWNER, key, make)[0]


def write_view(outputs: dict, made: list[dict], golden: str | None, replay: float,
               runtime) -> dict:
    """The run's examples and statistics artifacts over the transformed spans.

    Args:
        outputs: the `examples` and `statistics` directories to write.
        made: each transformed span: `span`, `role`, `dir` (its cached artifact).
        golden: the golden set's cached artifact, or None.
        replay: `data.spans.replay`.
        runtime: the run's `Runtime`.

    Returns:
        The output properties (see the stage's `run`).
    """
    from components.transform import plots
    from components.transform.lm import merge_statistics

    splits = {split: {"shards": [], "examples": 0} for split in documents.SPLITS}
    if replay:
        splits[REPLAY_SPLIT] = {"shards": [], "examples": 0, "fraction": replay}
    listed, spec = [], None
    for part in made:
        spec = spec or examples.read_feature_spec(files.join(part["dir"], "examples"))
        _link_span(part, splits, outputs["examples"])
        listed.append({"span": part["span"], "role": part["role"],
                       "stats": documents.read_stats(files.join(part["dir"], "statistics"))})
    statistics = merge_statistics([p["stats"] for p in listed if p["role"] == "trained"])
    if golden is not None:
        _link_golden(golden, splits, statistics, outputs["examples"])
    trained = [p["span"] for p in listed if p["role"] == "trained"]
    examples.write_feature_spec(outputs["examples"], {**spec, "splits": splits, "spans": trained})
    files.write_json(files.join(outputs["statistics"], documents.STATS_FILE), statistics)
    files.write_json(files.join(outputs["statistics"], documents.SPANS_FILE), {"spans": listed})
    plots.write_plots(statistics, outputs["statistics"])
    for split, entry in splits.items():
        runtime.log(f"[transform] {split}: {entry['examples']} examples in "
                    f"{len(entry['shards'])} shards")
    return {"examples": {split: entry["examples"] for split, entry in splits.items()},
            "statistics": {"packing_efficiency": statistics["total"]["packing_efficiency"],
                           "tokens_per_byte": statistics["total"]["tokens_per_byte"]}}


def _link_span(part: dict, splits: dict, out: str) -> None:
    """Link a span's shards into the view: a trained span's train and eval shards, a
    replayed span's train shards as `replay-*`, none of a reference span's."""
    source = files.join(part["dir"], "examples")
    spec = examples.read_feature_spec(source)
    targets = {"trained": {"train": "train", "eval": "eval"},
               REPLAY_SPLIT: {"train": REPLAY_SPLIT}}.get(part["role"], {})
    for split, target in targets.items():
        for name in spec["splits"][split]["shards"]:
            view = documents.span_view_name(name, part["span"], target)
            files.link(files.join(source, name), files.join(out, view))
            splits[target]["shards"].append(view)
        splits[target]["examples"] += spec["splits"][split]["examples"]


def _link_golden(golden: str, splits: dict, statistics: dict, out: str) -> None:
    source = files.join(golden, "examples")
    entry = examples.read_feature_spec(source)["splits"][documents.GOLDEN_SPLIT]
    for name in entry["shards"]:
        files.link(files.join(source, name), files.join(out, name))
    splits[documents.GOLDEN_SPLIT] = entry
    golden_stats = documents.read_stats(files.join(golden, "statistics"))
    statistics["splits"][documents.GOLDEN_SPLIT] = golden_stats["splits"][documents.GOLDEN_SPLIT]
