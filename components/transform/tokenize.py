"""Batched tokenization for the transform, identical to the serving tokenizer.

Each document becomes `[bos] + ids + [eos]` plus, per token, the UTF-8 bytes of text it
covers (bos/eos cover none), so a window's byte count is a plain sum and the byte counts
of a document always add up to its text's size.

Two engines, one result:
    SentencePieceBatch  bpe/unigram: the SentencePiece library on the artifact's own
                        `spm.model`, the same model (and the same C++ encoder) that
                        tensorflow-text's `SentencepieceTokenizer` runs in the SavedModel;
                        tests assert identical ids, also against a SavedModel reloaded in a
                        fresh process. It is ~1.7x faster per core than the TensorFlow op
                        here and needs no TensorFlow in the workers. For BPE it encodes
                        repeated chunks once (`separable_chunks`, exact by construction and
                        tested), and it can spread batches over worker processes while the
                        caller packs the previous batch. A token's bytes are its piece's
                        length ("▁" is one space byte, a byte-fallback piece one byte),
                        lossless here because the tokenizer uses identity normalization.
    TfTextBatch         wordpiece, byte_bpe: `models.tokenizer.TextTokenizer`, the serving
                        op graph itself; bytes from its offsets.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from pipeline.core import files
from pipeline.core.contracts.tokenizer import INFO_FILE, SENTENCEPIECE_TYPES, TokenizerInfo

SPACE_PIECE = "\u2581"


def token_byte_counts(ends: np.ndarray, num_bytes: int) -> np.ndarray:
    """Bytes of text each token covers, from the tokens' end offsets.

    Pieces of one character share offsets; taking each token's advance past the furthest
    end so far gives every byte to exactly one token (WordPiece: the whitespace before a
    word goes to its first piece).

    Args:
        ends: the tokens' end byte offsets into the text.
        num_bytes: the text's UTF-8 size.

    Returns:
        int64 counts, one per token, summing to `num_bytes` (when there is a token).
    """
    if len(ends) == 0:
        return np.zeros(0, np.int64)
    covered = np.maximum.accumulate(np.minimum(ends.astype(np.int64), num_bytes))
    counts = np.diff(covered, prepend=0)
    counts[-1] += num_bytes - covered[-1]
    return counts


def frame_document(ids: np.ndarray, text_bytes: np.ndarray, num_bytes: int, bos: int,
                   eos: int) -> tuple[np.ndarray, np.ndarray]:
    """`[bos] + ids + [eos]` and the matching per-token byte counts.

    Any bytes the text tokens do not account for go to eos, so a document's counts always
    sum to `num_bytes`.

    Args:
        ids: the text's token ids.
        text_bytes: bytes covered by each of them.
        num_bytes: the text's UTF-8 size.
        bos: the BOS id (from the tokenizer artifact).
        eos: the EOS id.

    Returns:
        `(tokens, token_bytes)`, int64 arrays of equal length.
    """
    tokens = np.concatenate([[bos], ids, [eos]]).astype(np.int64)
    token_bytes = np.concatenate([[0], text_bytes, [0]]).astype(np.int64)
    token_bytes[-1] += num_bytes - int(text_bytes.sum())
    return tokens, token_bytes


def separable_chunks(text: str) -> list[str]:
    """Cut a text where a line break is followed by a space; the pieces concatenate back.

    For a SentencePiece BPE model trained by `sentencepiece_training` (whitespace-split
    words, whitespace only as a leading run inside a piece, no dummy prefix), no piece
    can span such a cut, and BPE only ever merges adjacent symbols into a vocabulary
    piece, so encoding the chunks one by one gives exactly the ids of the whole text.
    Source code and prose repeat such chunks (indented lines) a lot, which is what the
    encoder's chunk cache exploits.
    """
    parts = text.split("\n ")
    if len(parts) == 1:
        return parts
    return [parts[0] + "\n", *(" " + part + "\n" for part in parts[1:-1]), " " + parts[-1]]


# Texts the fast id path is checked against before it is used (ASCII, multi-byte
# characters, byte fallback, whitespace runs, empty).
_PROBE_TEXTS = ["def f(x):\n    return x  # done\n", "caf\u00e9 \u2581 \u6f22\u5b57 \U0001f600",
                "\t\n \n  a", ""]


def raw_id_encoder(processor):
    """A function `texts -> int32 ids of each text as bytes`, or None when unavailable.

    SentencePiece's public `encode(..., out_type="numpy")` wraps each result with
    `np.frombuffer`, which costs about two thirds as much as the BPE itself on the short
    chunks the encoder sees (hundreds of thousands per 100 MB of source code). The C++
    batch method behind it returns plain buffers, and copying those to `bytes` is ~18x
    cheaper. That method and the defaults it is passed are private, so it is used only if
    they exist and it gives exactly the public ids on `_PROBE_TEXTS`.

    Args:
        processor: a `sentencepiece.SentencePieceProcessor`.
    """
    try:
        method = processor._processor._EncodeAsBufferBatch
        args = (1, None, processor._enable_sampling, processor._nbest_size,
                processor._alpha, processor._add_bos, processor._add_eos, processor._reverse)
        probe = [bytes(buffer) for buffer in method(_PROBE_TEXTS, *args)]
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None
    expected = processor.encode(_PROBE_TEXTS, out_type="numpy", num_threads=1)
    if len(probe) != len(expected) or processor._enable_sampling or not all(
            np.array_equal(np.frombuffer(r, np.int32), e) for r, e in zip(probe, expected)):
        return None

    def encode(texts: list[str]) -> list[bytes]:
        return [bytes(buffer) for buffer in method(texts, *args)]

    return encode


class SentencePieceEncoder:
    """SentencePiece ids of texts, with a cache of separable chunks (see `separable_chunks`).

    Args:
        model: the `spm.model` bytes.
        separable: whether the model allows chunked encoding (the artifact's
            `options["separable"]`, set for BPE by `sentencepiece_training`).
    """

    # Bounds the cache's memory (a few hundred MB at most); it is emptied when full.
    MAX_CACHED_CHARS = 64 * 2**20

    def __init__(self, model: bytes, separable: bool):
        import sentencepiece as spm

        self.processor = spm.SentencePieceProcessor(model_proto=model)
        self.separable = separable
        self.raw_encode = raw_id_encoder(self.processor) or self._public_raw_encode
        # chunk -> its int32 ids as bytes: a document's ids are one join of its chunks'.
        self.cache: dict[str, bytes] = {}
        self.cached_chars = 0

    def _public_raw_encode(self, texts: list[str]) -> list[bytes]:
        return [ids.tobytes() for ids in self.processor.encode(texts, out_type="numpy",
                                                               num_threads=1)]

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Texts -> their int32 ids, exactly as `processor.encode` gives them."""
        if not self.separable:
            return [np.frombuffer(ids, np.int32) for ids in self.raw_encode(texts)]
        if self.cached_chars > self.MAX_CACHED_CHARS:
            self.cache.clear()
            self.cached_chars = 0
        chunked = [separable_chunks(text) for text in texts]
        cache = self.cache
        missing = [c for c in dict.fromkeys(itertools.chain.from_iterable(chunked))
                   if c not in cache]
        if missing:
            cache.update(zip(missing, self.raw_encode(missing)))
            self.cached_chars += sum(map(len, missing))
        ids_of = cache.__getitem__
        return [np.frombuffer(b"".join(map(ids_of, chunks)), np.int32) for chunks in chunked]


_WORKER_ENCODER: SentencePieceEncoder | None = None


def _start_worker(model: bytes, separable: bool) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = SentencePieceEncoder(model, separable)


def _encode_in_worker(texts: list[str]) -> list[np.ndarray]:
    return _WORKER_ENCODER.encode(texts)


def _balanced_parts(texts: list[str], parts: int) -> list[list[str]]:
    """Consecutive runs of texts of about equal total length."""
    ends = np.cumsum([len(t) for t in texts])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts) if len(texts) else []
    bounds = [0, *sorted(set(int(c) + 1 for c in cuts)), len(texts)]
    return [texts[a:b] for a, b in zip(bounds, bounds[1:]) if a < b]


class SentencePieceBatch:
    """Encodes batches of texts with the SentencePiece library, in `processes` processes.

    `submit` starts encoding a batch and returns a handle whose `result()` gives per text
    its ids and the bytes each id covers, so the caller can pack one batch while the next
    is encoded. With one process everything happens in the caller's process.

    Args:
        model: the `spm.model` bytes.
        separable: see `SentencePieceEncoder`.
        processes: how many processes encode (1: the caller's own).
    """

    def __init__(self, model: bytes, separable: bool, processes: int = 1):
        self.encoder = SentencePieceEncoder(model, separable)
        processor = self.encoder.processor
        self.piece_bytes = np.array([
            1 if processor.is_byte(i) else
            0 if processor.is_control(i) or processor.is_unknown(i) else
            len(processor.id_to_piece(i).replace(SPACE_PIECE, " ").encode("utf-8"))
            for i in range(processor.get_piece_size())], np.int64)
        self.processes = processes
        self.pool_key = _pool_key(model, separable, processes)
        self.pool = _acquire_pool(self.pool_key, model) if processes > 1 else None

    def submit(self, texts: list[str]):
        """Start encoding `texts`; returns a handle with `result()`."""
        if self.pool is None:
            return _Deferred(lambda: self._with_bytes(self.encoder.encode(texts)))
        futures = [self.pool.submit(_encode_in_worker, part)
                   for part in _balanced_parts(texts, self.processes)]
        return _Deferred(lambda: self._with_bytes(
            [ids for future in futures for ids in future.result()]))

    def encode(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Texts -> per text its ids and the bytes each id covers."""
        return self.submit(texts).result()

    def _with_bytes(self, encoded: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(ids, self.piece_bytes[ids]) for ids in encoded]

    def close(self) -> None:
        """Release the worker processes (stopped when no other user is left)."""
        if self.pool is not None:
            _release_pool(self.pool_key)
            self.pool = None


# Worker pools by (model hash, separable, processes) with their user counts: the DoFns of
# one pipeline (train and eval) share one set of processes.
_POOLS: dict[tuple, list] = {}


def _pool_key(model: bytes, separable: bool, processes: int) -> tuple:
    return hashlib.sha256(model).hexdigest(), separable, processes


def start_workers(directory: str, processes: int) -> None:
    """Start the tokenizer processes `load_batch_tokenizer(directory, processes)` will use
    now, so that their startup (imports, model load) overlaps the caller's own; they stay
    up until `shutdown_pools`. Nothing to start for WordPiece or one process.

    Args:
        directory: the tokenizer artifact directory.
        processes: how many processes will encode.
    """
    from components.shared.shards import open_read

    info = TokenizerInfo(**files.read_json(files.join(directory, INFO_FILE)))
    if info.type not in SENTENCEPIECE_TYPES or processes <= 1:
        return
    with open_read(files.join(directory, info.model_file)) as f:
        model = f.read()
    separable = bool(info.options.get("separable"))
    pool = _acquire_pool(_pool_key(model, separable, processes), model)
    for _ in range(processes):  # the executor starts a process per task it cannot place
        pool.submit(_encode_in_worker, [])


def _acquire_pool(key: tuple, model: bytes):
    if key not in _POOLS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the Beam worker that owns this object runs threads.
        pool = ProcessPoolExecutor(key[2], multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(model, key[1]))
        _POOLS[key] = [pool, 0]
    _POOLS[key][1] += 1
    return _POOLS[key][0]


def _release_pool(key: tuple) -> None:
    entry = _POOLS.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        entry[0].shutdown()
        del _POOLS[key]


def shutdown_pools() -> None:
    """Stop every worker pool of this process (runners need not call `DoFn.teardown`)."""
    for pool, _ in list(_POOLS.values()):
        pool.shutdown()
    _POOLS.clear()


class _Deferred:
    def __init__(self, compute):
        self.compute = compute

    def result(self):
        return self.compute()


class TfTextBatch:
    """Encodes batches of texts with the serving tokenizer's TensorFlow ops.

    Args:
        directory: the tokenizer artifact directory.
    """

    def __init__(self, directory: str):
        import tensorflow as tf

        from models.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(directory)
        self.tokenize = tf.function(tokenizer.tokenize_with_offsets,
                                    input_signature=[tf.TensorSpec([None], tf.string)])

    def submit(self, texts: list[str]):
        """Encode `texts` now; returns a handle with `result()`."""
        result = self.encode(texts)
        return _Deferred(lambda: result)

    def close(self) -> None:
        """Nothing to release."""

    def encode(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Texts -> per text its ids and the bytes each id covers (from the offsets)."""
        ids, _, ends = self.tokenize(texts)
        splits = ids.row_splits.numpy()
        flat_ids, flat_ends = ids.flat_values.numpy(), ends.flat_values.numpy()
        result = []
        for i, text in enumerate(texts):
            row = slice(splits[i], splits[i + 1])
            result.append((flat_ids[row], token_byte_counts(flat_ends[row],
                                                            len(text.encode("utf-8")))))
        return result


def load_batch_tokenizer(directory: str, processes: int = 1):
    """The transform's engine for a tokenizer artifact (see the module docstring).

    Reads through Beam's filesystems, so a worker needs no TensorFlow for SentencePiece.

    Args:
        directory: the tokenizer artifact directory.
        processes: SentencePiece only: how many processes encode.

    Returns:
        `(engine, info)`: an object with `submit(texts)`, `encode(texts)` and `close()`,
        and the `TokenizerInfo`.
    """
    from components.shared.shards import open_read

    info = TokenizerInfo(**files.read_json(files.join(directory, INFO_FILE)))
    if info.type not in SENTENCEPIECE_TYPES:
        return TfTextBatch(directory), info
    with open_read(files.join(directory, info.model_file)) as f:
        model = f.read()
    return SentencePieceBatch(model, bool(info.options.get("separable")), processes), info
