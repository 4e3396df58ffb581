"""The tokenizer artifact's description, readable without TensorFlow.

Artifact layout (written by `components/tokenizer/__init__.py`):
    tokenizer.json   {"type", "vocab_size", "model_file", "normalization", "special_tokens",
                      "options"}
    spm.model        SentencePiece types (`bpe`, `unigram`): the model proto
    bpe.json         byte-level BPE (`byte_bpe`, a checkpoint's): {"vocabulary", "merges",
                     "unsplittable_tokens"}
    vocab.txt        one piece per line, line number = id. SentencePiece: control
                     characters in a piece (e.g. a newline) written as JSON string escapes;
                     WordPiece (`wordpiece`): the model itself, BERT's format
    training.json    the training sample and options actually used

The directory may be local or on any filesystem TensorFlow's `tf.io.gfile` reads (gs://).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

INFO_FILE = "tokenizer.json"
# The types whose model is a SentencePiece proto (the transform encodes them with the
# sentencepiece package, in processes); the others (`wordpiece`, a checkpoint's
# `byte_bpe`) are encoded with the serving tokenizer's TensorFlow ops.
SENTENCEPIECE_TYPES = ("bpe", "unigram")


@dataclass(frozen=True)
class TokenizerInfo:
    """What the model and the export need to know about a tokenizer.

    Special token ids are always read from here, never assumed.

    Attributes:
        type: `bpe`, `unigram`, `wordpiece`, or `byte_bpe` (GPT-2's byte-level BPE,
            imported from a checkpoint: `bpe.json` holds its vocabulary and merges).
        vocab_size: number of ids (the rows of the model's token embedding).
        model_file: the model file's name inside the artifact directory.
        normalization: Unicode normalization applied before tokenizing (`NFC`, `NFKC`, `none`).
        special_tokens: name (`pad`, `unk`, `bos`, `eos`, `mask`; `cls`, `sep` for
            WordPiece, where bos is cls and eos is sep) -> id.
        options: type-specific settings (WordPiece: `lower_case`, `suffix_indicator`).
        token_count: the ids the tokenizer itself produces and decodes, when fewer than
            `vocab_size` (a checkpoint whose embedding has rows beyond its tokenizer, e.g.
            GPT-2's 50257 tokens in 50304 rows: those ids are never generated); None:
            all `vocab_size` ids.
    """

    type: str
    vocab_size: int
    model_file: str
    normalization: str
    special_tokens: dict
    options: dict = field(default_factory=dict)
    token_count: int | None = None

    @property
    def pad_id(self) -> int:
        return self.special_tokens["pad"]

    @property
    def bos_id(self) -> int:
        return self.special_tokens["bos"]

    @property
    def eos_id(self) -> int:
        return self.special_tokens["eos"]

    def to_json(self) -> dict:
        return {"type": self.type, "vocab_size": self.vocab_size, "model_file": self.model_file,
                "normalization": self.normalization, "special_tokens": dict(self.special_tokens),
                "options": dict(self.options),
                # Only when set: the descriptions (and digests) of other tokenizers stay as
                # they were.
                **({"token_count": self.token_count} if self.token_count is not None else {})}


def open_file(path: str, mode: str = "rb"):
    """Open a local file, or a URL (gs://...) through `tf.io.gfile`."""
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, mode)
    return open(path, mode)


def join(directory: str, name: str) -> str:
    """`directory/name` for a local path or a URL."""
    return f"{directory.rstrip('/')}/{name}" if "://" in directory else os.path.join(directory, name)


def read_info(directory: str) -> TokenizerInfo:
    """Read `tokenizer.json` from a tokenizer artifact directory (local or gs://)."""
    with open_file(join(directory, INFO_FILE)) as f:
        return TokenizerInfo(**json.loads(f.read().decode("utf-8")))


def write_info(directory: str, info: TokenizerInfo) -> None:
    """Write `tokenizer.json` into a tokenizer artifact directory (local or gs://)."""
    text = json.dumps(info.to_json(), indent=2, sort_keys=True)
    with open_file(join(directory, INFO_FILE), "wb") as f:
        f.write(text.encode("utf-8"))


def tokenizer_digest(tokenizer_dir: str) -> str:
    """SHA-256 of a tokenizer artifact's description and model file: its identity."""
    info = read_info(tokenizer_dir)
    with open_file(join(tokenizer_dir, info.model_file)) as f:
        return digest_of(info, f.read())


def digest_of(info: TokenizerInfo, model: bytes) -> str:
    """`tokenizer_digest` of the artifact `info` and `model` would make, unwritten (a
    checkpoint's tokenizer, compared with a run's)."""
    digest = hashlib.sha256(json.dumps(info.to_json(), sort_keys=True).encode())
    digest.update(model)
    return digest.hexdigest()
