"""The one TensorFlow function that turns text into token ids, and back.

TensorFlow-specific, like the SavedModel export (`export.py`): the text preprocessing
must be the same op graph in tf.data (train, evaluate) and inside the exported SavedModel
(serving), so it is written once here with tensorflow-text ops. Backbones and the models
on them stay backend-agnostic Keras.

Three kinds, chosen by the artifact's `type`:
    bpe, unigram  SentencePiece with byte fallback (`tf_text.SentencepieceTokenizer`);
                  lossless: detokenize(tokenize(t)) == normalize(t)
    wordpiece     BERT's basic tokenization (whitespace and punctuation, CJK characters
                  apart, optional lower-casing) then WordPiece (`tf_text.BertTokenizer`);
                  whitespace is not kept, so detokenize joins words with single spaces
    byte_bpe      GPT-2's byte-level BPE, imported with a checkpoint (`train.init_from`):
                  keras-hub's `BytePairTokenizer` on its TensorFlow path (GPT-2's
                  pre-tokenization, then the merges); lossless, every token is bytes
"""

from __future__ import annotations

import json

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
        model: the model file's bytes (`spm.model`, `vocab.txt` for WordPiece, `bpe.json`
            for byte-level BPE).
    """

    def __init__(self, info: TokenizerInfo, model: bytes):
        super().__init__(name="text_tokenizer")
        self.info = info
        if info.type == "wordpiece":
            self._build_wordpiece(model.decode("utf-8").splitlines())
        elif info.type == "byte_bpe":
            self._build_byte_bpe(json.loads(model.decode("utf-8")))
        else:
            self.sentencepiece = tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)

    def _build_wordpiece(self, vocab: list[str]) -> None:
        options = self.info.options
        self.vocab = tf.constant(vocab)
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64)),
            num_oov_buckets=1)
        unknown = vocab[self.info.special_tokens["unk"]]
        suffix = options.get("suffix_indicator", WORDPIECE_SUFFIX)
        if options.get("pretokenizer") == "keras_hub":
            # A KerasHub preset's BertTokenizer: keras-hub's own word splitting
            # (`_keras_hub_words`), then WordPiece as keras-hub runs it.
            self.wordpiece = None
            self.fast_wordpiece = tf_text.FastWordpieceTokenizer(
                vocab=vocab, token_out_type=tf.int32, suffix_indicator=suffix,
                unknown_token=unknown, no_pretokenization=True, support_detokenization=True)
        else:
            self.wordpiece = tf_text.BertTokenizer(
                table, suffix_indicator=suffix, token_out_type=tf.int32, unknown_token=unknown,
                lower_case=bool(options.get("lower_case", False)))
        special = self.info.special_tokens
        self.dropped_ids = tf.constant(sorted({special[name] for name in
                                               ("pad", "cls", "sep", "mask", "bos", "eos")
                                               if name in special}), tf.int32)

    def _build_byte_bpe(self, spec: dict) -> None:
        import keras_hub

        # The TensorFlow path always (not the Python `tokenizers` one keras-hub takes
        # eagerly when that package is installed): the graph is what the SavedModel keeps.
        self.byte_bpe = keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=spec["vocabulary"], merges=spec["merges"],
            unsplittable_tokens=spec["unsplittable_tokens"] or None, dtype="int32",
            _allow_python_workflow=False)
        # Each id's length in bytes (one character of a byte-level token is one byte; an
        # unsplittable token stands for its own text): tokens concatenate to the text's
        # bytes, so offsets are running sums of these.
        lengths = [0] * self.info.vocab_size
        special = set(spec["unsplittable_tokens"])
        for token, token_id in spec["vocabulary"].items():
            lengths[token_id] = len(token.encode("utf-8")) if token in special else len(token)
        self.token_byte_lengths = tf.constant(lengths, tf.int64)

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """Unicode normalization as in ingest, so serving sees what training saw."""
        if self.info.normalization == "none":
            return texts
        return tf_text.normalize_utf8(texts, self.info.normalization)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Strings [B] -> ragged int32 ids [B, None], without BOS or EOS."""
        texts = self.normalize(texts)
        if self.info.type == "wordpiece" and self.wordpiece is not None:
            return self.wordpiece.tokenize(texts).merge_dims(-2, -1)
        if self.info.type == "wordpiece":
            return self.fast_wordpiece.tokenize(self._keras_hub_words(texts)[0]).merge_dims(-2, -1)
        if self.info.type == "byte_bpe":
            return self.byte_bpe.tokenize(texts)
        return self.sentencepiece.tokenize(texts)

    def tokenize_with_offsets(self, texts: tf.Tensor):
        """Like `tokenize`, plus byte offsets (starts, ends) into the normalized text."""
        texts = self.normalize(texts)
        if self.info.type == "wordpiece":
            if self.wordpiece is not None:
                ids, starts, ends = self.wordpiece.tokenize_with_offsets(texts)
            else:
                words, word_starts = self._keras_hub_words(texts)
                ids, starts, ends = self.fast_wordpiece.tokenize_with_offsets(words)
                starts, ends = (o + tf.expand_dims(word_starts, -1) for o in (starts, ends))
            return ids.merge_dims(-2, -1), starts.merge_dims(-2, -1), ends.merge_dims(-2, -1)
        if self.info.type == "byte_bpe":
            ids = self.byte_bpe.tokenize(texts)
            lengths = tf.gather(self.token_byte_lengths, ids)
            running = tf.cumsum(lengths.flat_values)
            before_row = tf.gather(tf.concat([[0], running], 0),
                                   tf.gather(lengths.row_starts(), lengths.value_rowids()))
            ends = lengths.with_flat_values(running - before_row)
            return ids, ends - lengths, ends
        return self.sentencepiece.tokenize_with_offsets(texts)

    def _keras_hub_words(self, texts: tf.Tensor):
        """keras-hub's `WordPieceTokenizer` pre-tokenization, with its own patterns (its
        whitespace is RE2's ASCII `\\s`, and lower-casing keeps accents unless asked):
        words [B, None] and their byte starts in the text as split."""
        from keras_hub.src.tokenizers import word_piece_tokenizer as patterns

        options = self.info.options
        if options.get("split_on_cjk", True):
            texts = tf.strings.regex_replace(texts, patterns.CJK_REGEX, r" \0 ")
            split, keep = (patterns.WHITESPACE_PUNCTUATION_AND_CJK_REGEX,
                           patterns.PUNCTUATION_AND_CJK_REGEX)
        else:
            split, keep = patterns.WHITESPACE_AND_PUNCTUATION_REGEX, patterns.PUNCTUATION_REGEX
        if options.get("strip_accents", False):
            texts = tf.strings.regex_replace(tf_text.normalize_utf8(texts, "NFD"), r"\p{Mn}", "")
        words, starts, _ = tf_text.regex_split_with_offsets(texts, split, keep)
        if options.get("lower_case", False):
            words = tf.ragged.map_flat_values(tf_text.case_fold_utf8, words)
        return words, starts

    def detokenize(self, ids) -> tf.Tensor:
        """Int ids [B, None] (ragged or dense) -> strings [B]; control ids are dropped."""
        if self.info.type == "byte_bpe":
            return self.byte_bpe.detokenize(ids)
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
