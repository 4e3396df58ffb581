"""transform (TFX Transform, apply phase): documents + tokenizer -> packed token TFRecords.

Outputs `examples/` (sharded TFRecords of `tf.train.Example` and `feature_spec.json`; the
feature contract and the causal-LM target rule are in `components/data/examples.py`) and
`statistics/stats.json` (documents, tokens, bytes, tokens per byte, packing efficiency,
per-domain token counts, unknown-token rate; per split and in total). Same input and
config give byte-identical shards.
"""

from __future__ import annotations

from pipeline.component import ComponentSpec

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
        Properties: example counts per split and the packing efficiency.
    """
    import apache_beam as beam

    from components.data import examples, layout
    from components.data.beam_options import pipeline_options
    from components.data.transform_beam import build_transform
    from models.tokenizer_info import read_info

    documents, tokenizer = inputs["documents"].uri, inputs["tokenizer"].uri
    documents_stats = layout.read_json(layout.join(documents, layout.STATS_FILE))
    pad_id = read_info(tokenizer).pad_id
    with beam.Pipeline(options=pipeline_options(runtime.beam_args)) as pipeline:
        shard_names = build_transform(pipeline, documents, documents_stats, tokenizer, pad_id,
                                      transform, outputs["examples"], outputs["statistics"])
    statistics = layout.read_json(layout.join(outputs["statistics"], layout.STATS_FILE))
    splits = {split: {"shards": shard_names[split],
                      "examples": statistics["splits"][split]["examples"]}
              for split in layout.SPLITS}
    layout.write_json(layout.join(outputs["examples"], layout.FEATURE_SPEC_FILE),
                      examples.feature_spec(transform.sequence_length, pad_id,
                                            transform.compression, splits))
    total = statistics["total"]
    runtime.log(f"[transform] {total['examples']} examples, {total['tokens']} tokens, "
                f"packing efficiency {total['packing_efficiency']:.4f}")
    return {"examples": {split: splits[split]["examples"] for split in layout.SPLITS},
            "statistics": {"packing_efficiency": total["packing_efficiency"],
                           "tokens_per_byte": total["tokens_per_byte"]}}


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
