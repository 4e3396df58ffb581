"""The on-disk contract of each artifact kind, one module per kind.

Every writer and every reader of an artifact goes through its module here, so a file name
or a layout is defined once:

    documents    ingest's output: JSONL.gz shards per split and `stats.json`
    examples     transform's output: TFRecord shards and `feature_spec.json`
    tokenizer    a tokenizer artifact's `tokenizer.json` and model files
    model        a model artifact: SavedModel variants, `model.keras`, the training record
    labels       a classifier's label vocabulary (`vocabulary.json`, `labels.txt`)
    blessing     evaluate's verdict (`blessing.json`) and metrics (`metrics.json`)
    serving_dir  push's numbered versions, their model cards, digests and pruning
"""
