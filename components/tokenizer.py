"""tokenizer (TFX Transform, analyze phase): train documents -> a trained tokenizer.

Trains SentencePiece (BPE or unigram, byte fallback, identity normalization because ingest
already normalized) on a seeded sample of the train split. Output `tokenizer/`:
`spm.model`, `vocab.txt`, `tokenizer.json` (special ids, normalization; read everywhere
through `models.tokenizer_info.read_info`) and `training.json` (the sample and options).
"""

from __future__ import annotations

from pipeline.component import ComponentSpec

SPEC = ComponentSpec(
    name="tokenizer",
    module="components.tokenizer",
    inputs={"documents": "Documents"},
    outputs={"tokenizer": "Tokenizer"},
    config=("tokenizer",),
)


def run(inputs, outputs, runtime, tokenizer):
    """Train the tokenizer on the documents artifact's train split.

    Args:
        inputs: `documents`, the ingest artifact.
        outputs: `tokenizer`, the directory to write.
        runtime: the run's `Runtime`.
        tokenizer: the `TokenizerConfig`.

    Returns:
        Properties of the tokenizer artifact (vocab size, special ids).

    Raises:
        UsageError: the sample is empty or the vocabulary size does not suit it.
    """
    from components.data import layout
    from components.data import sentencepiece_training as training
    from pipeline.errors import UsageError

    documents = inputs["documents"].uri
    stats = layout.read_json(layout.join(documents, layout.STATS_FILE))
    texts = training.read_texts(layout.split_paths(documents, stats, "train"))
    sample = training.sample_texts(texts, stats["splits"]["train"]["bytes"],
                                   tokenizer.sample_bytes, tokenizer.seed)
    if not sample:
        raise UsageError(f"tokenizer.sample_bytes={tokenizer.sample_bytes} is smaller than "
                         f"every train document")
    coverage = training.fit_character_coverage(sample, tokenizer.vocab_size,
                                               tokenizer.character_coverage)
    sample_bytes = sum(len(t.encode("utf-8")) for t in sample)
    runtime.log(f"[tokenizer] training {tokenizer.type} on {len(sample)} documents "
                f"({sample_bytes} bytes), character coverage {coverage:.6f}")
    model = training.train_model(sample, tokenizer, coverage)
    info = training.write_artifact(outputs["tokenizer"], model, tokenizer, stats["normalization"], {
        "sample_documents": len(sample), "sample_bytes": sample_bytes, "seed": tokenizer.seed,
        "character_coverage_requested": tokenizer.character_coverage,
        "character_coverage_used": coverage,
    })
    return {"tokenizer": {"vocab_size": info.vocab_size, "special_tokens": info.special_tokens}}


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
