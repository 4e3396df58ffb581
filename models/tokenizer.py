"""The one TensorFlow function that turns text into token ids, and back.

TensorFlow-specific, like the SavedModel export (`export.py`): the text preprocessing
must be the same op graph in tf.data (train, evaluate) and inside the exported SavedModel
(serving), so it is written once here with tensorflow-text ops. Backbones and the models
on them stay backend-agnostic Keras.

Two kinds, chosen by the artifact's `type`:
    bpe, unigram  SentencePiece with byte fallback (`tf_text.SentencepieceTokenizer`);
                  lossless: detokenize(tokenize(t)) == normalize(t)
    wordpiece     BERT's basic tokenization (whitespace and punctuation, CJK characters
                  apart, optional lower-casing) then WordPiece (`tf_text.BertTokenizer`);
                  whitespace is not kept, so detokenize joins words with single spaces
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from pipeline.core.contracts.tokenizer import TokenizerInfo, join, open_file, read_info

WORDPIECE_SUFFIX = "##"


class TextTokenizer(tf.Module):
    """Normalize and tokenize text with tensorflow-text ops (graph- and SavedModel-safe).

    Attach it to an exported `tf.Module` and its model (SentencePiece proto or WordPiece
    vocabulary) is saved with it.

    Args:
        info: the artifact's `TokenizerInfo`.
        model: the model file's bytes (`spm.model`, or `vocab.txt` for WordPiece).
    """

    def __init__(self, info: TokenizerInfo, model: bytes):
        super().__init__(name="text_tokenizer")
        self.info = info
        if info.type == "wordpiece":
            self._build_wordpiece(model.decode("utf-8").splitlines())
        else:
            self.sentencepiece = tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)

    def _build_wordpiece(self, vocab: list[str]) -> None:
        options = self.info.options
        self.vocab = tf.constant(vocab)
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64)),
            num_oov_buckets=1)
        unknown = vocab[self.info.special_tokens["unk"]]
        self.wordpiece = tf_text.BertTokenizer(
            table, suffix_indicator=options.get("suffix_indicator", WORDPIECE_SUFFIX),
            token_out_type=tf.int32, unknown_token=unknown,
            lower_case=bool(options.get("lower_case", False)))
        special = self.info.special_tokens
        self.dropped_ids = tf.constant(sorted({special[name] for name in
                                               ("pad", "cls", "sep", "mask", "bos", "eos")
                                               if name in special}), tf.int32)

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """Unicode normalization as in ingest, so serving sees what training saw."""
        if self.info.normalization == "none":
            return texts
        return tf_text.normalize_utf8(texts, self.info.normalization)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [B] -> ragged int32 ids [B, None], without BOS or EOS."""
        texts = self.normalize(texts)
        if self.info.type == "wordpiece":
            return self.wordpiece.tokenize(texts).merge_dims(-2, -1)
        return self.sentencepiece.tokenize(texts)

    def tokenize_with_offsets(self, texts: tf.Tensor):
        """Like `tokenize`, plus byte offsets (starts, ends) into the normalized text."""
        texts = self.normalize(texts)
        if self.info.type == "wordpiece":
            ids, starts, ends = self.wordpiece.tokenize_with_offsets(texts)
            return ids.merge_dims(-2, -1), starts.merge_dims(-2, -1), ends.merge_dims(-2, -1)
        return self.sentencepiece.tokenize_with_offsets(texts)

    def detokenize(self, ids) -> tf.Tensor:
        """Int ids [B, None] (ragged or dense) -> strings [B]; control ids are dropped."""
        if self.info.type != "wordpiece":
            return self.sentencepiece.detokenize(ids)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        ids = tf.cast(ids, tf.int32)
        keep = tf.reduce_all(tf.not_equal(ids.flat_values[:, None], self.dropped_ids[None, :]),
                             axis=1)
        kept = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        pieces = tf.gather(self.vocab, kept)
        joined = tf.strings.reduce_join(pieces, axis=-1, separator=" ")
        suffix = self.info.options.get("suffix_indicator", WORDPIECE_SUFFIX)
        return tf.strings.regex_replace(joined, " " + _regex_escape(suffix), "")


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in text)


def load_tokenizer(directory: str) -> TextTokenizer:
    """Build the TensorFlow tokenizer from a tokenizer artifact directory (local or gs://)."""
    info = read_info(directory)
    with open_file(join(directory, info.model_file)) as f:
        return TextTokenizer(info, f.read())
