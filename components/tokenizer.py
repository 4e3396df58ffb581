"""tokenizer (TFX Transform, analyze phase): train documents -> a trained tokenizer.

Trains on a seeded sample of the train split (`tokenizer.sample_bytes`, one streaming
pass, so memory holds only the sample):
    bpe, unigram  SentencePiece with byte fallback and identity normalization (ingest
                  already normalized); output `spm.model` and `vocab.txt`
    wordpiece     a WordPiece vocabulary for the BERT family; output `vocab.txt`
Both write `tokenizer.json` (type, special ids, normalization; read everywhere through
`models.tokenizer_info.read_info`) and `training.json` (the sample and options).
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
        Properties of the tokenizer artifact (type, vocab size, special ids).

    Raises:
        UsageError: the sample is empty or the vocabulary size does not suit it.
    """
    from components.data import layout
    from components.data.tokenizer_sample import read_texts, sample_texts
    from pipeline.errors import UsageError

    documents = inputs["documents"].uri
    stats = layout.read_json(layout.join(documents, layout.STATS_FILE))
    texts = read_texts(layout.split_paths(documents, stats, "train"))
    sample = sample_texts(texts, stats["splits"]["train"]["bytes"], tokenizer.sample_bytes,
                          tokenizer.seed)
    if not sample:
        raise UsageError(f"tokenizer.sample_bytes={tokenizer.sample_bytes} is smaller than "
                         f"every train document")
    record = {"sample_documents": len(sample),
              "sample_bytes": sum(len(t.encode("utf-8")) for t in sample),
              "seed": tokenizer.seed}
    runtime.log(f"[tokenizer] training {tokenizer.type} on {record['sample_documents']} "
                f"documents ({record['sample_bytes']} bytes)")
    train = _train_wordpiece if tokenizer.type == "wordpiece" else _train_sentencepiece
    info = train(sample, tokenizer, stats["normalization"], outputs["tokenizer"], record)
    return {"tokenizer": {"type": info.type, "vocab_size": info.vocab_size,
                          "special_tokens": info.special_tokens}}


def _train_sentencepiece(sample, tokenizer, normalization, directory, record):
    from components.data import sentencepiece_training as training

    coverage = training.fit_character_coverage(sample, tokenizer.vocab_size,
                                               tokenizer.character_coverage)
    model = training.train_model(sample, tokenizer, coverage)
    return training.write_artifact(directory, model, tokenizer, normalization, {
        **record, "character_coverage_requested": tokenizer.character_coverage,
        "character_coverage_used": coverage})


def _train_wordpiece(sample, tokenizer, normalization, directory, record):
    from components.data import wordpiece_training as training

    vocab = training.train_vocab(sample, tokenizer)
    return training.write_artifact(directory, vocab, tokenizer, normalization,
                                   {**record, "lower_case": tokenizer.lower_case})


if __name__ == "__main__":
    from pipeline.entrypoint import main

    raise SystemExit(main(SPEC.name))
