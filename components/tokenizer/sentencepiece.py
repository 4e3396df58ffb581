"""Training a SentencePiece tokenizer (BPE or unigram) on the tokenizer's sample.

Byte fallback, so nothing is out of vocabulary; identity normalization, because ingest
already normalized. Training is single-threaded with a fixed seed and no shuffling: the
same sample gives a byte-identical `spm.model`.
"""

from __future__ import annotations

import io
import json
from collections import Counter

from pipeline.core import files
from pipeline.core.contracts.tokenizer import TokenizerInfo, write_info
from pipeline.core.errors import UsageError

MODEL_FILE = "spm.model"
VOCAB_FILE = "vocab.txt"
TRAINING_FILE = "training.json"
# Ids 0-3 are SentencePiece's built-in meta pieces; mask is a control symbol (never produced
# from text, dropped on decode) and gets the next id. The ids are read back from the model.
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"}
NUM_BYTE_PIECES = 256
MAX_SENTENCE_CHARS = 1 << 15
# Room left for SentencePiece's own character counting, which differs slightly from ours.
_CHARACTER_MARGIN = 8
MIN_CHARACTER_COVERAGE = 0.98  # SentencePiece rejects less


def fit_character_coverage(texts: list[str], vocab_size: int, requested: float) -> float:
    """`requested` coverage, lowered if its characters would not fit in the vocabulary.

    SentencePiece needs a piece for every character within the coverage besides the byte
    and special pieces; with byte fallback the rarest characters can go to bytes instead.

    Args:
        texts: the training sample.
        vocab_size: `tokenizer.vocab_size`.
        requested: `tokenizer.character_coverage`.

    Returns:
        The coverage to train with, never below `MIN_CHARACTER_COVERAGE` (if even that
        does not fit, training reports that the vocabulary is too small).
    """
    chars = Counter()
    for text in texts:
        chars.update(text)
    chars["▁"] += chars.pop(" ", 0)  # SentencePiece counts spaces as "▁"
    total = sum(chars.values())
    room = vocab_size - len(SPECIAL_PIECES) - NUM_BYTE_PIECES - _CHARACTER_MARGIN
    counts = sorted(chars.values(), reverse=True)
    if room < 1 or len(counts) <= room:
        return requested
    covered_by_room = sum(counts[:room]) / total
    if covered_by_room >= requested:
        return requested
    # Midway between `room - 1` and `room` characters, so SentencePiece keeps exactly `room`.
    return max(MIN_CHARACTER_COVERAGE, (sum(counts[:room - 1]) / total + covered_by_room) / 2)


def _sentences(texts: list[str]):
    for text in texts:
        for start in range(0, len(text), MAX_SENTENCE_CHARS):
            yield text[start:start + MAX_SENTENCE_CHARS]


def train_model(texts: list[str], tokenizer, coverage: float) -> bytes:
    """Train SentencePiece and return the serialized model.

    Args:
        texts: the training sample (already normalized by ingest, so the identity rule).
        tokenizer: the `TokenizerConfig`.
        coverage: the character coverage to use (see `fit_character_coverage`).

    Returns:
        The `spm.model` bytes.

    Raises:
        UsageError: the vocabulary size does not suit the sample.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.set_random_generator_seed(tokenizer.seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(texts), model_writer=model,
            model_type=tokenizer.type, vocab_size=tokenizer.vocab_size,
            character_coverage=coverage, byte_fallback=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            # A dummy "▁" prefix makes the decoder drop leading whitespace pieces, so
            # leading spaces would not round-trip; documents are packed mid-stream anyway.
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True, split_digits=True,
            # Whitespace only as a leading run inside a piece: what makes BPE encoding
            # separable at "line break, space" (see `tokenize.separable_chunks`).
            split_by_whitespace=True, treat_whitespace_as_suffix=False,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3,
            pad_piece=SPECIAL_PIECES["pad"], unk_piece=SPECIAL_PIECES["unk"],
            bos_piece=SPECIAL_PIECES["bos"], eos_piece=SPECIAL_PIECES["eos"],
            control_symbols=[SPECIAL_PIECES["mask"]],
            num_threads=1, shuffle_input_sentence=False, input_sentence_size=0,
            max_sentence_length=4 * MAX_SENTENCE_CHARS, minloglevel=2)
    except RuntimeError as err:
        if "Vocabulary size" in str(err) or "vocab_size" in str(err):
            detail = str(err).split("]")[-1].strip()
            raise UsageError(f"tokenizer.vocab_size={tokenizer.vocab_size} does not suit the "
                             f"training sample: {detail}") from None
        raise
    return model.getvalue()


def escape_piece(piece: str) -> str:
    """A piece as one line of vocab.txt (JSON string escapes for control characters)."""
    return json.dumps(piece, ensure_ascii=False)[1:-1]


def write_artifact(directory: str, model: bytes, tokenizer, normalization: str,
                   training: dict) -> TokenizerInfo:
    """Write spm.model, vocab.txt, tokenizer.json and training.json.

    Args:
        directory: the tokenizer artifact directory (any Beam filesystem).
        model: the serialized SentencePiece model.
        tokenizer: the `TokenizerConfig`.
        normalization: the Unicode normalization ingest applied (`NFC`, `NFKC`).
        training: facts about the training run, for `training.json`.

    Returns:
        The artifact's `TokenizerInfo`, with special ids read from the model.
    """
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=model)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    special = {name: processor.piece_to_id(piece) for name, piece in SPECIAL_PIECES.items()}
    info = TokenizerInfo(type=tokenizer.type, vocab_size=len(pieces), model_file=MODEL_FILE,
                         normalization=normalization, special_tokens=special,
                         options={"separable": tokenizer.type == "bpe"})
    files.write_bytes(files.join(directory, MODEL_FILE), model)
    files.write_bytes(files.join(directory, VOCAB_FILE),
                       "".join(escape_piece(p) + "\n" for p in pieces).encode("utf-8"))
    files.write_json(files.join(directory, TRAINING_FILE), training)
    write_info(directory, info)
    return info
