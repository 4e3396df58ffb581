"""Data-stage building blocks shared by `ingest`, `tokenizer` and `transform`.

Each Beam stage is a small named `PTransform` or `DoFn` in its own module; writing is a
step of its own. Pure functions (cleaning, splitting, packing, encoding) sit beside them so
they can be tested without a runner.

    layout        artifact file names and JSON files on any Beam filesystem
    sources       matching `data.inputs`, fingerprinting the raw input
    records       reading raw records: lines, byte ranges, whole files, .gz/.bz2, damage
    cleaning      decoding, parsing, each cleaning step, over-long documents, the split
    ingest_beam   ingest's pipeline: read and clean, deduplicate, write shards and stats
    counts        summing count dictionaries, in Beam and out
    shards        deterministic shard files: JSONL.gz, TFRecord framing, JSON
    tokenizer_sample        the tokenizer's deterministic training sample
    sentencepiece_training  the SentencePiece (BPE, unigram) trainer and artifact
    wordpiece_training      the WordPiece trainer and artifact
    tokenize      the transform's batched tokenization (identical to serving)
    packing       packing documents into fixed-length windows
    examples      the TFRecord feature contract and its proto encoding
    transform_beam  transform's pipeline: shard by shard, leftovers, statistics
    plots         the statistics pictures
    reader        tf.data access to the examples artifact
    beam_options  Beam pipeline options from `pipeline.beam_args`
"""
