"""tokenizer (TFX Transform, analyze phase): train documents -> a tokenizer, trained or copied.

Trains on a seeded sample of the train split (`tokenizer.sample_bytes`, one streaming
pass, so memory holds only the sample):
    bpe, unigram  SentencePiece with byte fallback and identity normalization (ingest
                  already normalized); output `spm.model` and `vocab.txt`
    wordpiece     a WordPiece vocabulary for the BERT family; output `vocab.txt`
Both write `tokenizer.json` (type, special ids, normalization; read everywhere through
`pipeline/core/contracts/tokenizer.py` `read_info`) and `training.json` (the sample and options).

A model only understands the ids of the tokenizer it was trained with, so when the run
continues from one, that model's tokenizer is copied instead of trained (the `source`
input, resolved outside the DAG by `resolve_source`, see `pretrained.py`):
- a language model that `train.warm_start` continues from, while one is in service: a
  retraining run on grown data keeps the tokenizer in service;
- a fine-tuning task (`task.type` not `lm`) with `task.tokenizer` or `train.warm_start`
  set: the pretrained model's tokenizer (TFX's Importer), so that a model trained from
  scratch for comparison sees the same ids too;
- any run with `train.init_from`: the checkpoint's own tokenizer files, converted
  (`checkpoint.py`).
"""

from __future__ import annotations

import os

from pipeline.core.component import ComponentSpec


def resolve_source(config, inputs: dict):
    """The tokenizer to copy instead of training one, or None to train one.

    Args:
        config: the resolved `LmpipeConfig`.
        inputs: the step's wired inputs (`documents`).

    Returns:
        A Tokenizer artifact fingerprinted by its digest, or None.

    Raises:
        UsageError: a fine-tuning task's source names no usable tokenizer.
    """
    from components.tokenizer import pretrained

    if config.train.init_from is not None:
        from components.tokenizer import checkpoint

        return checkpoint.source(config)
    if config.task.type != "lm":
        return pretrained.task_source(config) if pretrained.requested_source(config) else None
    return _in_service(config, inputs)


def _in_service(config, inputs: dict):
    """The tokenizer of the language model `train.warm_start` continues from.

    None without a warm start, before anything is in service, and when the tokenizer in
    service is this step's own published output for these documents (so a rerun on the
    same data stays cached instead of copying it).
    """
    from components.tokenizer import pretrained
    from pipeline.core import artifacts
    from pipeline.core.component import cache_key
    from pipeline.core.contracts import model as model_contract
    from pipeline.core.contracts.tokenizer import tokenizer_digest

    if config.train.warm_start is None:
        return None
    source = model_contract.resolve(config.train.warm_start, config.push.serving_dir, base_key="")
    if not source.uri:
        return None
    directory, digest = pretrained.tokenizer_of(os.path.abspath(source.uri),
                                                config.train.warm_start, "train.warm_start")
    own = artifacts.read_marker(artifacts.execution_dir(
        os.path.abspath(config.pipeline.root), SPEC.name,
        cache_key(SPEC, config, {**inputs, "source": None})))
    trained = ((own or {}).get("outputs") or {}).get("tokenizer", {}).get("uri")
    if trained and os.path.isdir(trained) and tokenizer_digest(trained) == digest:
        return None
    return artifacts.Artifact(type="Tokenizer", uri=directory, fingerprint=digest,
                              properties={"source": source.uri, "sha256": digest})


def _reads_outside_dag(config) -> bool:
    from components.tokenizer import pretrained

    if config.train.init_from is not None:
        return True
    if config.task.type != "lm":
        return pretrained.requested_source(config) is not None
    return config.train.warm_start is not None


SPEC = ComponentSpec(
    name="tokenizer",
    module="components.tokenizer",
    inputs={"documents": "Documents"},
    outputs={"tokenizer": "Tokenizer"},
    config=("tokenizer",),
    optional_inputs=("documents", "source"),
    resolvers={"source": resolve_source},
    uses_resolvers=_reads_outside_dag,
)


def run(inputs, outputs, runtime, tokenizer):
    """Train the tokenizer on the documents artifact's train split, or copy `source`.

    Args:
        inputs: `documents`, the ingest artifact (absent when a fine-tuning task copies its
            pretrained model's tokenizer), and `source` (see `resolve_source`).
        outputs: `tokenizer`, the directory to write.
        runtime: the run's `Runtime`.
        tokenizer: the `TokenizerConfig`.

    Returns:
        Properties of the tokenizer artifact (type, vocab size, special ids).

    Raises:
        UsageError: the sample is empty or the vocabulary size does not suit it.
    """
    from pipeline.core.contracts import documents
    from components.tokenizer.sample import read_texts, sample_texts
    from pipeline.core.errors import UsageError

    if inputs.get("source") is not None and inputs["source"].properties.get("checkpoint"):
        from components.tokenizer import checkpoint

        return checkpoint.write_tokenizer(inputs["source"], outputs["tokenizer"], runtime)
    if inputs.get("source") is not None:
        from components.tokenizer import pretrained

        return pretrained.copy_tokenizer(inputs["source"], outputs["tokenizer"], runtime)
    documents_dir = inputs["documents"].uri
    stats = documents.read_stats(documents_dir)
    texts = read_texts(documents.split_paths(documents_dir, stats, "train"))
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
    from components.tokenizer import sentencepiece as training

    coverage = training.fit_character_coverage(sample, tokenizer.vocab_size,
                                               tokenizer.character_coverage)
    model = training.train_model(sample, tokenizer, coverage)
    return training.write_artifact(directory, model, tokenizer, normalization, {
        **record, "character_coverage_requested": tokenizer.character_coverage,
        "character_coverage_used": coverage})


def _train_wordpiece(sample, tokenizer, normalization, directory, record):
    from components.tokenizer import wordpiece as training

    vocab = training.train_vocab(sample, tokenizer)
    return training.write_artifact(directory, vocab, tokenizer, normalization,
                                   {**record, "lower_case": tokenizer.lower_case})
