"""The tokenizer artifact's description, readable without TensorFlow.

Artifact layout (written by `components/tokenizer.py`):
    tokenizer.json   {"type", "vocab_size", "model_file", "normalization", "special_tokens"}
    spm.model        the SentencePiece model proto
    vocab.txt        one piece per line, line number = id (control characters in a piece,
                     e.g. a newline, written as JSON string escapes)
    training.json    the training sample and options actually used
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

INFO_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TokenizerInfo:
    """What the model and the export need to know about a tokenizer.

    Special token ids are always read from here, never assumed.

    Attributes:
        type: `bpe`, `unigram` or `wordpiece`.
        vocab_size: number of ids.
        model_file: the model file's name inside the artifact directory.
        normalization: Unicode normalization applied before tokenizing (`NFC`, `NFKC`, `none`).
        special_tokens: name (`pad`, `unk`, `bos`, `eos`, `mask`, ...) -> id.
    """

    type: str
    vocab_size: int
    model_file: str
    normalization: str
    special_tokens: dict

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
                "normalization": self.normalization, "special_tokens": dict(self.special_tokens)}


def read_info(directory: str) -> TokenizerInfo:
    """Read `tokenizer.json` from a tokenizer artifact directory."""
    with open(os.path.join(directory, INFO_FILE), encoding="utf-8") as f:
        return TokenizerInfo(**json.load(f))


def write_info(directory: str, info: TokenizerInfo) -> None:
    """Write `tokenizer.json` into a tokenizer artifact directory."""
    with open(os.path.join(directory, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info.to_json(), f, indent=2, sort_keys=True)
