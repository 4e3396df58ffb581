"""A checkpoint's own tokenizer files -> lmpipe's tokenizer artifact (no TensorFlow).

GPT-2's byte-level BPE: `tokenizer.json` (the `tokenizers` library's file: a `BPE` model
behind a `ByteLevel` pre-tokenizer), else `vocab.json` + `merges.txt`. It becomes a
`byte_bpe` artifact whose model file `bpe.json` holds the vocabulary, the merges and the
tokens never split (the added special tokens), which `models/tokenizer.py` turns into
TensorFlow ops. Special ids come from config.json (`bos_token_id`, `eos_token_id`,
`pad_token_id`), else from `tokenizer_config.json`'s token strings; GPT-2 has one,
`<|endoftext|>`, which is then every one of them.

The tokenizer's ids must fit the checkpoint's `vocab_size`: a tokenizer of another model
would give ids the embedding was not trained on. Fewer is allowed for GPT-2's and Llama's
(an embedding padded to a multiple of 64, as Hugging Face's own models allow): the artifact
then records its `token_count`, and generation never emits the rows beyond it. BERT's
WordPiece must fit exactly (its masked-LM corruption draws from every id).
"""

from __future__ import annotations

import hashlib
import json
import os

from pipeline.core.errors import UsageError

BPE_MODEL_FILE = "bpe.json"
# GPT-2's one special token: document end (and start, and padding).
END_OF_TEXT = "<|endoftext|>"
# The files a checkpoint's tokenizer may be in (what its fingerprint covers).
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "tokenizer.model", "vocab.txt", "config.json",
                   "assets/tokenizer/vocabulary.json", "assets/tokenizer/merges.txt",
                   "assets/tokenizer/vocabulary.spm", "assets/tokenizer/vocabulary.txt")


def files_digest(directory: str) -> str:
    """SHA-256 of the tokenizer files present in a checkpoint directory (its identity)."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            digest.update(name.encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _token_count(count: int, vocab_size: int) -> dict:
    """The `token_count` field of a tokenizer with fewer ids than the embedding's rows."""
    return {"token_count": count} if count < vocab_size else {}


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err})") from None


def byte_bpe(directory: str, vocab_size: int, config: dict,
             vocabulary_file: str = "vocab.json") -> tuple[dict, bytes]:
    """GPT-2's tokenizer as a `byte_bpe` artifact.

    Args:
        directory: the directory of the tokenizer files (a checkpoint, or a KerasHub
            preset's assets/tokenizer/).
        vocab_size: the checkpoint's `vocab_size`.
        config: its parsed config.json (Hugging Face; {} for a preset).
        vocabulary_file: the vocabulary's name beside merges.txt (KerasHub:
            vocabulary.json).

    Returns:
        (the `TokenizerInfo` fields, the `bpe.json` bytes).

    Raises:
        UsageError: no tokenizer files, a tokenizer of another kind, or of another size.
    """
    vocabulary, merges, added, source = _bpe_files(directory, vocabulary_file)
    for token, token_id in added.items():
        vocabulary.setdefault(token, token_id)
    count = len(vocabulary)
    if count > vocab_size or max(vocabulary.values()) != count - 1:
        raise UsageError(f"{source}: the tokenizer has {count} ids (up to "
                         f"{max(vocabulary.values())}), config.json's vocab_size is {vocab_size}")
    special = _special_ids(directory, vocabulary, config, source)
    info = {"type": "byte_bpe", "vocab_size": vocab_size, "model_file": BPE_MODEL_FILE,
            "normalization": "none", "special_tokens": special,
            "options": {"source": os.path.basename(source)}, **_token_count(count, vocab_size)}
    model = json.dumps({"vocabulary": vocabulary, "merges": merges,
                        "unsplittable_tokens": sorted(added)}, ensure_ascii=False,
                       sort_keys=True).encode("utf-8")
    return info, model


def _bpe_files(directory: str, vocabulary_file: str):
    """(vocabulary, merges as "a b" strings, added tokens -> id, the file read)."""
    path = os.path.join(directory, "tokenizer.json")
    if os.path.isfile(path):
        data = _read_json(path)
        model = data.get("model") or {}
        pre = data.get("pre_tokenizer") or {}
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or data.get("normalizer"):
            raise UsageError(f"{path}: not GPT-2's byte-level BPE (model {model.get('type')}, "
                             f"pre_tokenizer {pre.get('type')}, normalizer "
                             f"{(data.get('normalizer') or {}).get('type')})")
        if pre.get("add_prefix_space"):
            raise UsageError(f"{path}: pre_tokenizer add_prefix_space=true is not supported")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        added = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
        return dict(model["vocab"]), merges, added, path
    vocab_path, merges_path = (os.path.join(directory, n) for n in (vocabulary_file, "merges.txt"))
    if not (os.path.isfile(vocab_path) and os.path.isfile(merges_path)):
        raise UsageError(f"{directory}: no tokenizer (tokenizer.json, or {vocabulary_file} and "
                         "merges.txt)")
    with open(merges_path, encoding="utf-8") as f:
        merges = [line for line in f.read().split("\n")
                  if line and not line.startswith("#version")]
    vocabulary = _read_json(vocab_path)
    added = {t: vocabulary[t] for t in (END_OF_TEXT,) if t in vocabulary}
    return vocabulary, merges, added, vocab_path


def _special_ids(directory: str, vocabulary: dict, config: dict, source: str) -> dict:
    """bos, eos, unk, pad ids: config.json's ids, else tokenizer_config.json's tokens; a
    missing one is the end-of-text token (GPT-2 has no other)."""
    path = os.path.join(directory, "tokenizer_config.json")
    tokens = _read_json(path) if os.path.isfile(path) else {}

    def named(name):
        token = tokens.get(f"{name}_token")
        token = token.get("content") if isinstance(token, dict) else token
        return vocabulary.get(token) if token is not None else None

    eos = config.get("eos_token_id")
    eos = named("eos") if eos is None else eos
    eos = vocabulary.get(END_OF_TEXT) if eos is None else eos
    if eos is None:
        raise UsageError(f"{source}: no end-of-text token (config.json eos_token_id or "
                         "tokenizer_config.json eos_token)")
    found = {"eos": eos, "bos": config.get("bos_token_id"), "pad": config.get("pad_token_id"),
             "unk": None}
    for name in ("bos", "pad", "unk"):
        if found[name] is None:
            found[name] = named(name)
        found[name] = eos if found[name] is None else found[name]
    for name, token_id in found.items():
        if not isinstance(token_id, int) or not 0 <= token_id < len(vocabulary):
            raise UsageError(f"{source}: the {name} id {token_id} is not an id of the tokenizer")
    return found


# SentencePiece's TrainerSpec.model_type -> the artifact's type (word and char models are
# not what tensorflow-text's op serves here).
_SENTENCEPIECE_TYPES = {1: "unigram", 2: "bpe"}


def sentencepiece(directory: str, vocab_size: int, config: dict,
                  model_file: str = "tokenizer.model") -> tuple[dict, bytes]:
    """Llama's tokenizer (`tokenizer.model`; a KerasHub preset's `vocabulary.spm`) as a
    SentencePiece artifact (`spm.model`).

    The model proto carries its own normalization, dummy prefix and byte fallback, which
    tensorflow-text's op applies as SentencePiece does, so the artifact's own
    normalization is `none`.

    Raises:
        UsageError: no tokenizer.model (Llama 3's tokenizer.json-only BPE is not read),
            an unreadable one, another model type, or another vocabulary size.
    """
    import sentencepiece as spm

    path = os.path.join(directory, model_file)
    if not os.path.isfile(path):
        raise UsageError(f"{directory}: no {model_file} (a SentencePiece model; a "
                         "tokenizer.json-only Llama tokenizer is not supported)")
    with open(path, "rb") as f:
        model = f.read()
    try:
        processor = spm.SentencePieceProcessor(model_proto=model)
        kind = _SENTENCEPIECE_TYPES.get(_model_type(model))
    except (RuntimeError, ValueError, IndexError) as err:
        raise UsageError(f"{path}: not a SentencePiece model ({err})") from None
    if kind is None:
        raise UsageError(f"{path}: a SentencePiece {_model_type(model)} model; lmpipe serves "
                         "unigram and bpe models")
    count = processor.get_piece_size()
    if count > vocab_size:
        raise UsageError(f"{path}: the tokenizer has {count} ids, config.json's vocab_size "
                         f"is {vocab_size}")
    eos = config.get("eos_token_id", processor.eos_id())
    special = {"bos": config.get("bos_token_id", processor.bos_id()), "eos": eos,
               "unk": processor.unk_id(),
               "pad": config.get("pad_token_id") if config.get("pad_token_id") is not None
               else (processor.pad_id() if processor.pad_id() >= 0 else eos)}
    for name, token_id in special.items():
        if not isinstance(token_id, int) or not 0 <= token_id < count:
            raise UsageError(f"{path}: the {name} id {token_id} is not an id of the tokenizer")
    info = {"type": kind, "vocab_size": vocab_size, "model_file": "spm.model",
            "normalization": "none", "special_tokens": special,
            "options": {"source": model_file}, **_token_count(count, vocab_size)}
    return info, model


def _model_type(proto: bytes) -> int:
    """`trainer_spec.model_type` of a serialized SentencePiece ModelProto (field 2, its
    field 3), read with a minimal protobuf wire-format walk: the protobuf runtime beside
    TensorFlow is older than the one sentencepiece's generated module needs."""
    trainer = _field(proto, 2)
    value = _field(trainer, 3) if trainer is not None else None
    return 1 if value is None else value  # proto default: UNIGRAM


def _field(message: bytes, number: int):
    """The last value of field `number` (varint or length-delimited) in `message`."""
    found, position = None, 0
    while position < len(message):
        key, position = _varint(message, position)
        kind = key & 7
        if kind == 0:
            value, position = _varint(message, position)
        elif kind == 2:
            length, position = _varint(message, position)
            value, position = message[position:position + length], position + length
        elif kind in (1, 5):
            value, position = None, position + (8 if kind == 1 else 4)
        else:
            raise ValueError(f"protobuf wire type {kind}")
        if key >> 3 == number:
            found = value
    return found


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


# BERT's special tokens by lmpipe's names (bos is [CLS], eos is [SEP], as the project's
# own WordPiece artifacts have them).
_WORDPIECE_SPECIAL = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]",
                      "mask": "[MASK]"}


def wordpiece(directory: str, vocab_size: int, config: dict) -> tuple[dict, bytes]:
    """BERT's tokenizer (`vocab.txt`, lower-casing from `tokenizer_config.json`
    `do_lower_case`, True when unset as in BERT's tokenizer) as a `wordpiece` artifact.

    Raises:
        UsageError: no vocab.txt, a missing special token, or another vocabulary size.
    """
    path = os.path.join(directory, "vocab.txt")
    settings_path = os.path.join(directory, "tokenizer_config.json")
    settings = _read_json(settings_path) if os.path.isfile(settings_path) else {}
    for key, supported in (("tokenize_chinese_chars", True), ("strip_accents", None)):
        if settings.get(key, supported) != supported:
            raise UsageError(f"{settings_path}: {key}={json.dumps(settings[key])} is not "
                             "supported")
    return _wordpiece(path, vocab_size, {"lower_case": bool(settings.get("do_lower_case", True)),
                                         "suffix_indicator": "##", "source": "vocab.txt"})


def keras_hub_wordpiece(directory: str, vocab_size: int, settings: dict,
                        source: str) -> tuple[dict, bytes]:
    """A KerasHub preset's `BertTokenizer` (assets/tokenizer/vocabulary.txt, its settings
    from tokenizer.json's `config`) as a `wordpiece` artifact split as keras-hub splits
    (`pretokenizer: keras_hub`: keras-hub's lower-casing does not strip accents, and its
    whitespace is ASCII's, unlike BERT's own tokenizer).

    Raises:
        UsageError: no vocabulary, a missing special token, another vocabulary size, or
            a setting lmpipe's tokenizer does not reproduce.
    """
    for key, supported in (("split", True), ("special_tokens_in_strings", False),
                           ("oov_token", "[UNK]")):
        if settings.get(key, supported) != supported:
            raise UsageError(f"{source}: config.{key}={json.dumps(settings[key])} is not "
                             "supported")
    return _wordpiece(os.path.join(directory, "vocabulary.txt"), vocab_size, {
        "pretokenizer": "keras_hub", "lower_case": bool(settings.get("lowercase", False)),
        "strip_accents": bool(settings.get("strip_accents", False)),
        "split_on_cjk": bool(settings.get("split_on_cjk", True)),
        "suffix_indicator": settings.get("suffix_indicator", "##"),
        "source": "vocabulary.txt"})


def _wordpiece(path: str, vocab_size: int, options: dict) -> tuple[dict, bytes]:
    """A WordPiece vocabulary file as a `wordpiece` artifact with `options`."""
    if not os.path.isfile(path):
        raise UsageError(f"{os.path.dirname(path)}: no {os.path.basename(path)} (BERT's "
                         "WordPiece vocabulary)")
    with open(path, "rb") as f:
        model = f.read()
    vocab = model.decode("utf-8").splitlines()
    if len(vocab) != vocab_size:
        raise UsageError(f"{path}: the tokenizer has {len(vocab)} ids, config.json's "
                         f"vocab_size is {vocab_size}")
    missing = [token for token in _WORDPIECE_SPECIAL.values() if token not in vocab]
    if missing:
        raise UsageError(f"{path}: no {missing[0]} token")
    ids = {name: vocab.index(token) for name, token in _WORDPIECE_SPECIAL.items()}
    info = {"type": "wordpiece", "vocab_size": vocab_size, "model_file": "vocab.txt",
            "normalization": "none",
            "special_tokens": {**ids, "bos": ids["cls"], "eos": ids["sep"]},
            "options": options}
    return info, model
