"""The one TensorFlow function that turns text into token ids, and back.

With `export.py`, one of the two TensorFlow-specific modules in `models/`: the text
preprocessing must be the same op graph in Beam (transform), in tf.data (train, evaluate)
and inside the exported SavedModel (serving), so it is written once here with
tensorflow-text ops. Backbones and tasks stay backend-agnostic Keras.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_text as tf_text

from models.tokenizer_info import TokenizerInfo, read_info


class TextTokenizer(tf.Module):
    """Normalize and tokenize text with tensorflow-text ops (graph- and SavedModel-safe).

    Attach it to an exported `tf.Module` and its SentencePiece resource is saved with it.

    Args:
        info: the artifact's `TokenizerInfo`.
        model: the serialized SentencePiece model.
    """

    def __init__(self, info: TokenizerInfo, model: bytes):
        super().__init__(name="text_tokenizer")
        self.info = info
        self.sentencepiece = tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """Unicode normalization as in ingest, so serving sees what training saw."""
        if self.info.normalization == "none":
            return texts
        return tf_text.normalize_utf8(texts, self.info.normalization)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [B] -> ragged int32 ids [B, None], without BOS or EOS."""
        return self.sentencepiece.tokenize(self.normalize(texts))

    def tokenize_with_offsets(self, texts: tf.Tensor):
        """Like `tokenize`, plus byte offsets (starts, ends) into the normalized text."""
        return self.sentencepiece.tokenize_with_offsets(self.normalize(texts))

    def detokenize(self, ids) -> tf.Tensor:
        """Int ids [B, None] (ragged or dense) -> strings [B]; control ids are dropped."""
        return self.sentencepiece.detokenize(ids)


def load_tokenizer(directory: str) -> TextTokenizer:
    """Build the TensorFlow tokenizer from a tokenizer artifact directory."""
    info = read_info(directory)
    with open(os.path.join(directory, info.model_file), "rb") as f:
        return TextTokenizer(info, f.read())
