"""Training a WordPiece vocabulary (the BERT family) on the tokenizer's sample.

Words come from tensorflow-text's `BasicTokenizer`, the same pre-tokenization that
`models.tokenizer.TextTokenizer` applies before WordPiece, and the vocabulary from
tensorflow-text's learner (`bert_vocab_from_dataset`), which is deterministic for a
given sample order. Reserved tokens take the first ids; every character of the sample
(up to the learner's limit of 1000) gets a piece, so only unseen characters are `[UNK]`.
"""

from __future__ import annotations

from pipeline.core import files
from pipeline.core.contracts.tokenizer import TokenizerInfo, write_info
from pipeline.core.errors import UsageError

VOCAB_FILE = "vocab.txt"
TRAINING_FILE = "training.json"
SUFFIX_INDICATOR = "##"
RESERVED = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# The learner drops words seen fewer times than this; small samples need a low floor.
MIN_WORD_COUNT = 2
_BATCH = 256


def train_vocab(texts: list[str], tokenizer) -> list[str]:
    """Learn the vocabulary.

    Args:
        texts: the training sample (already normalized by ingest).
        tokenizer: the `TokenizerConfig` (`vocab_size`, `lower_case`).

    Returns:
        The vocabulary, reserved tokens first; at most `vocab_size` entries.

    Raises:
        UsageError: the sample yields no vocabulary beyond the reserved tokens.
    """
    import tensorflow as tf
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(_BATCH)
    vocab = bert_vocab.bert_vocab_from_dataset(
        dataset, vocab_size=tokenizer.vocab_size, reserved_tokens=list(RESERVED.values()),
        bert_tokenizer_params={"lower_case": tokenizer.lower_case},
        learn_params={"lower_thresh": MIN_WORD_COUNT, "joiner": SUFFIX_INDICATOR})
    if len(vocab) <= len(RESERVED):
        raise UsageError(f"tokenizer.vocab_size={tokenizer.vocab_size}: the training sample "
                         f"gave no WordPiece vocabulary")
    return vocab[:tokenizer.vocab_size]


def write_artifact(directory: str, vocab: list[str], tokenizer, normalization: str,
                   training: dict) -> TokenizerInfo:
    """Write vocab.txt, tokenizer.json and training.json.

    Args:
        directory: the tokenizer artifact directory (any Beam filesystem).
        vocab: the learned vocabulary.
        tokenizer: the `TokenizerConfig`.
        normalization: the Unicode normalization ingest applied.
        training: facts about the training run, for `training.json`.

    Returns:
        The artifact's `TokenizerInfo` (bos is `[CLS]`, eos is `[SEP]`).
    """
    ids = {name: vocab.index(token) for name, token in RESERVED.items()}
    special = {**ids, "bos": ids["cls"], "eos": ids["sep"]}
    info = TokenizerInfo(type="wordpiece", vocab_size=len(vocab), model_file=VOCAB_FILE,
                         normalization=normalization, special_tokens=special,
                         options={"lower_case": tokenizer.lower_case,
                                  "suffix_indicator": SUFFIX_INDICATOR})
    files.write_bytes(files.join(directory, VOCAB_FILE),
                       "".join(token + "\n" for token in vocab).encode("utf-8"))
    files.write_json(files.join(directory, TRAINING_FILE), training)
    write_info(directory, info)
    return info
