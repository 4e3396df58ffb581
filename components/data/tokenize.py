"""Batched tokenization in Beam with the tf-text ops the SavedModel uses.

Each document becomes `[bos] + ids + [eos]` plus, per token, the UTF-8 bytes of text it
covers (bos/eos cover none), so a window's byte count is a plain sum and the byte counts
of a document always add up to its text's size.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from components.data.cleaning import document_id

BATCH_SIZE = 256


def token_byte_counts(ends: np.ndarray, num_bytes: int) -> np.ndarray:
    """Bytes of text each token covers, from the tokens' end offsets.

    Byte-fallback pieces of one character share offsets; taking each token's advance past
    the furthest end so far gives every byte to exactly one token.

    Args:
        ends: the tokens' end byte offsets into the text.
        num_bytes: the text's UTF-8 size.

    Returns:
        int32 counts, one per token, summing to `num_bytes` (when there is a token).
    """
    if len(ends) == 0:
        return np.zeros(0, np.int32)
    covered = np.maximum.accumulate(np.minimum(ends.astype(np.int64), num_bytes))
    counts = np.diff(covered, prepend=0)
    counts[-1] += num_bytes - covered[-1]
    return counts.astype(np.int32)


def frame_document(ids: np.ndarray, ends: np.ndarray, num_bytes: int, bos: int, eos: int):
    """`[bos] + ids + [eos]` and the matching per-token byte counts.

    Args:
        ids: the text's token ids.
        ends: their end byte offsets.
        num_bytes: the text's UTF-8 size.
        bos: the BOS id (from the tokenizer artifact).
        eos: the EOS id.

    Returns:
        `(tokens, token_bytes)`, int32 arrays of equal length.
    """
    tokens = np.concatenate([[bos], ids, [eos]]).astype(np.int32)
    text_bytes = token_byte_counts(ends, num_bytes)
    token_bytes = np.concatenate([[0], text_bytes, [0]]).astype(np.int32)
    token_bytes[-1] += num_bytes - int(text_bytes.sum())  # only if the text gave no tokens
    return tokens, token_bytes


class _TokenizeFn(beam.DoFn):
    def __init__(self, tokenizer_dir: str):
        self.tokenizer_dir = tokenizer_dir

    def setup(self):
        import tensorflow as tf

        from models.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(self.tokenizer_dir)
        special = self.tokenizer.info.special_tokens
        self.bos, self.eos, self.unk = special["bos"], special["eos"], special["unk"]
        self.tokenize = tf.function(self.tokenizer.tokenize_with_offsets,
                                    input_signature=[tf.TensorSpec([None], tf.string)])

    def process(self, documents):
        texts = [d["text"] for d in documents]
        ids, _, ends = self.tokenize(texts)
        splits = ids.row_splits.numpy()
        flat_ids, flat_ends = ids.flat_values.numpy(), ends.flat_values.numpy()
        for i, document in enumerate(documents):
            row = slice(splits[i], splits[i + 1])
            num_bytes = len(texts[i].encode("utf-8"))
            tokens, token_bytes = frame_document(flat_ids[row], flat_ends[row], num_bytes,
                                                 self.bos, self.eos)
            yield {"id": document_id(texts[i]), "domain": document["domain"], "tokens": tokens,
                   "token_bytes": token_bytes, "bytes": num_bytes,
                   "unknown": int(np.count_nonzero(flat_ids[row] == self.unk))}


class TokenizeDocuments(beam.PTransform):
    """Documents -> tokenized documents `{"id", "domain", "tokens", "token_bytes", "bytes",
    "unknown"}`, in batches, the tokenizer loaded once per worker (`DoFn.setup`).

    Args:
        tokenizer_dir: the tokenizer artifact directory.
    """

    def __init__(self, tokenizer_dir: str):
        super().__init__()
        self.tokenizer_dir = tokenizer_dir

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=BATCH_SIZE)
                | "Tokenize" >> beam.ParDo(_TokenizeFn(self.tokenizer_dir)))
