"""transform (TFX Transform, apply phase): documents + tokenizer -> packed token TFRecords.

Outputs `examples/` (sharded TFRecords of `tf.train.Example` and `feature_spec.json`; the
feature contract and the causal-LM target rule are in `pipeline/core/contracts/examples.py`) and
`statistics/` (`stats.json`: documents, every drop reason from ingest, tokens, bytes,
tokens per byte, packing efficiency, unknown-token rate, per-domain and per-length-bucket
counts, the length histogram; per split and in total; and two PNGs of the length
histogram and the per-domain token counts). Same input and config give byte-identical
shards, whatever the runner's parallelism.
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec

SPEC = ComponentSpec(
    name="transform",
    module="components.transform",
    inputs={"documents": "Documents", "tokenizer": "Tokenizer"},
    outputs={"examples": "Examples", "statistics": "Statistics"},
    config=("transform",),
)


def run(inputs, outputs, runtime, transform):
    """Tokenize and pack the documents into the examples artifact.

    Args:
        inputs: `documents` (ingest) and `tokenizer` (tokenizer) artifacts.
        outputs: `examples` and `statistics` directories to write.
        runtime: the run's `Runtime` (Beam options in `beam_args`).
        transform: the `TransformConfig`.

    Returns:
        Properties: example counts per split, the packing efficiency, tokens per byte.
    """
    import threading

    from components.transform import plots
    from pipeline.core import files
    from pipeline.core.contracts import documents, examples
    from components.transform.tokenize import shutdown_pools
    from pipeline.core.contracts.tokenizer import INFO_FILE

    documents_dir, tokenizer = inputs["documents"].uri, inputs["tokenizer"].uri
    processes = tokenizer_processes(transform, runtime.beam_args)
    try:
        _start_tokenizer(runtime, tokenizer, processes)
        documents_stats = documents.read_stats(documents_dir)
        pad_id = files.read_json(files.join(tokenizer, INFO_FILE))["special_tokens"]["pad"]
        preloading = threading.Thread(target=plots.preload, daemon=True)
        preloading.start()
        shard_names = _run_pipeline(runtime, transform, documents_dir, documents_stats,
                                    tokenizer, pad_id, outputs, processes)
    finally:
        shutdown_pools()
    statistics = documents.read_stats(outputs["statistics"])
    preloading.join()
    plots.write_plots(statistics, outputs["statistics"])
    splits = {split: {"shards": shard_names[split],
                      "examples": statistics["splits"][split]["examples"]}
              for split in documents.SPLITS}
    files.write_json(files.join(outputs["examples"], examples.FEATURE_SPEC_FILE),
                      examples.feature_spec(transform.sequence_length, pad_id,
                                            transform.compression, splits,
                                            list(transform.length_buckets)))
    _log(runtime, statistics)
    total = statistics["total"]
    return {"examples": {split: splits[split]["examples"] for split in documents.SPLITS},
            "statistics": {"packing_efficiency": total["packing_efficiency"],
                           "tokens_per_byte": total["tokens_per_byte"]}}


def _start_tokenizer(runtime, tokenizer: str, processes: int) -> None:
    """Start the tokenizer's worker processes before Beam builds and starts the pipeline,
    so their startup overlaps it (they serve the DoFns only when those run here)."""
    from pipeline.core.beam import single_process
    from components.transform.tokenize import start_workers

    if single_process(runtime.beam_args):
        start_workers(tokenizer, processes)


def _run_pipeline(runtime, transform, documents, documents_stats, tokenizer, pad_id,
                  outputs, processes: int) -> dict:
    import apache_beam as beam

    from pipeline.core.beam import pipeline_options
    from components.transform.beam import build_transform

    with beam.Pipeline(options=pipeline_options(runtime.beam_args)) as pipeline:
        return build_transform(pipeline, documents, documents_stats, tokenizer, pad_id,
                               transform, outputs["examples"], outputs["statistics"],
                               processes)


def tokenizer_processes(transform, beam_args) -> int:
    """`transform.tokenizer_processes`, or when unset: every core if Beam runs in this one
    process (DirectRunner in_memory), else 1 (the runner already has a worker per core)."""
    import os

    from pipeline.core.beam import single_process

    if transform.tokenizer_processes is not None:
        return transform.tokenizer_processes
    return (os.cpu_count() or 1) if single_process(beam_args) else 1


def _log(runtime, statistics: dict) -> None:
    for split in ("train", "eval"):
        s = statistics["splits"][split]
        runtime.log(f"[transform] {split}: {s['examples']} examples, {s['tokens']} tokens, "
                    f"packing efficiency {s['packing_efficiency'] or 0:.4f}")
