"""Data-stage building blocks shared by `ingest`, `tokenizer` and `transform`.

Each Beam stage is a small named `PTransform` in its own module; writing is a transform of
its own (`shards.WriteShards`). Pure functions (cleaning, splitting, packing) sit beside
them so they can be tested without a runner.

    layout      artifact file names and the documents manifest
    sources     matching `data.inputs` on any Beam filesystem, fingerprinting
    cleaning    parsing raw records into documents, normalization, the split
    ingest_beam ingest's PTransforms and pipeline
    counts      summing count dictionaries, in Beam and out
    shards      deterministic sharded writing (JSONL.gz, TFRecord) and JSON files
    sentencepiece_training  the tokenizer's sample and trainer
    tokenize    batched tokenization with the SavedModel's tf-text ops
    packing     packing documents into fixed-length windows
    examples    the TFRecord feature contract
    transform_beam  transform's PTransforms and pipeline
    reader      tf.data access to the examples artifact
    beam_options  Beam pipeline options from `pipeline.beam_args`
"""
