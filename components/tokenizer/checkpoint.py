"""The tokenizer of the checkpoint `train.init_from` names (the tokenizer step writes it).

A pretrained model only understands the ids of the tokenizer it was trained with, so a run
that starts from a checkpoint trains no tokenizer: the checkpoint's own files (GPT-2's
byte-level BPE) become this step's tokenizer artifact, which transform, train and the
exported SavedModel then use like any other (`models/checkpoints/tokenizer_files.py`).
The source's fingerprint is the digest of those files, so changing them reruns the step.
"""

from __future__ import annotations

import os

from pipeline.core.artifacts import Artifact
from pipeline.core.errors import UsageError


def source(config) -> Artifact:
    """The checkpoint as the tokenizer step's `source` input.

    Raises:
        UsageError: `task.tokenizer` is set too, or the checkpoint is unreadable.
    """
    from models.checkpoints import check_weight_files, read_checkpoint
    from models.checkpoints.tokenizer_files import files_digest

    if config.task.tokenizer is not None:
        raise UsageError("task.tokenizer and train.init_from are both set: a checkpoint "
                         "brings its own tokenizer (remove task.tokenizer)")
    checkpoint = read_checkpoint(config.train.init_from)
    # Refused here, the first step that reads the checkpoint, rather than after the data
    # steps have run.
    check_weight_files(checkpoint)
    if config.tuning.enabled:
        raise UsageError("tuning.enabled and train.init_from are both set: the tuner's "
                         "trials train fresh models, not the checkpoint (set tuning.enabled "
                         "to false)")
    if checkpoint.model["family"] == "bert" and config.task.type == "text_to_text":
        raise UsageError(f"train.init_from {checkpoint.directory} is a BERT encoder, which "
                         "cannot continue a text causally (task.type 'text_to_text')")
    return Artifact(type="Tokenizer", uri=checkpoint.directory,
                    fingerprint=files_digest(checkpoint.directory),
                    properties={"checkpoint": checkpoint.directory, "source": checkpoint.directory})


def write_tokenizer(source_artifact: Artifact, output: str, runtime) -> dict:
    """Convert the checkpoint's tokenizer files into the tokenizer artifact at `output`.

    Returns:
        Properties of the tokenizer artifact (type, vocab size, special ids, source).
    """
    from models.checkpoints import read_checkpoint, tokenizer_of
    from pipeline.core.contracts.tokenizer import TokenizerInfo, write_info

    checkpoint = read_checkpoint(source_artifact.uri)
    fields, model = tokenizer_of(checkpoint)
    info = TokenizerInfo(**fields)
    with open(os.path.join(output, info.model_file), "wb") as f:
        f.write(model)
    write_info(output, info)
    padded = (f", {info.vocab_size} embedding rows" if info.token_count is not None else "")
    runtime.log(f"[tokenizer] imported {info.type} ({info.token_count or info.vocab_size} ids"
                f"{padded}) from the checkpoint {checkpoint.directory}")
    return {"tokenizer": {"type": info.type, "vocab_size": info.vocab_size,
                          "token_count": info.token_count or info.vocab_size,
                          "special_tokens": info.special_tokens,
                          "imported_from": checkpoint.directory}}
