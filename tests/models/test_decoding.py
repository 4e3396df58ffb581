"""The export's fast decoding: the per-length compiled decoders and the sampler."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

WINDOW = 128  # two cache lengths: 64 and 128
BANNED = (0, 2, 4)  # pad, bos, mask
EOS = 3


@pytest.fixture(scope="module")
def module_and_model():
    from models.export import LanguageModelExport
    from pipeline.core.contracts.tokenizer import TokenizerInfo
    from tests.models.conftest import tiny_lm

    model = tiny_lm(seed=7, max_sequence_length=WINDOW)
    info = TokenizerInfo(type="bpe", vocab_size=384, model_file="spm.model",
                         normalization="NFC",
                         special_tokens={"pad": 0, "unk": 1, "bos": 2, "eos": EOS, "mask": 4})
    return LanguageModelExport(model, SimpleNamespace(info=info), WINDOW), model


def _greedy_reference(model, prompt: list[int], end: int) -> list[int]:
    """Greedy decoding by full forward passes (no cache), as `generate` defines it."""
    tokens = list(prompt)
    while len(tokens) < end:
        ids = np.array([tokens], np.int32)
        logits = np.array(model({"token_ids": ids, "segment_ids": np.ones_like(ids)}))[0, -1]
        logits[list(BANNED)] = -np.inf
        tokens.append(int(np.argmax(logits)))
        if tokens[-1] == EOS:
            break
    return tokens


LONG = [2] + [(7 * i) % 380 + 5 for i in range(69)]  # 70 tokens: three prefill passes


@pytest.mark.parametrize("new, prompts", [
    # the 64-position cache, then the whole window's
    (20, [[2, 17, 200, 5, 9], [2, 33, 8, 150, 42, 91, 7, 300, 12], [2, 5, 6]]),
    (100, [[2, 17, 200, 5, 9], [2, 33, 8, 150, 42, 91, 7, 300, 12], [2, 5, 6]]),
    # prompts longer than a prefill pass (`export._PREFILL`), of different lengths
    (20, [LONG, LONG[:40], LONG[:66]]),
])
def test_greedy_decoding_equals_full_forward_passes(module_and_model, new, prompts):
    import tensorflow as tf

    module, model = module_and_model
    assert module._cache_lengths() == [64, WINDOW]
    # Three rows: decoded as four (the batch is padded to a power of two), three returned.
    lengths = np.array([len(p) for p in prompts], np.int32)
    tokens = np.zeros((len(prompts), WINDOW), np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, :len(prompt)] = prompt
    ends = np.minimum(lengths + new, WINDOW).astype(np.int32)
    decoded = module._decode_causal(tf.constant(tokens), tf.constant(lengths), tf.constant(ends),
                                    tf.constant(0.0), tf.constant(0), tf.constant(1.0),
                                    tf.constant(0)).numpy()
    assert decoded.shape == (3, WINDOW)
    for row, prompt in enumerate(prompts):
        expected = _greedy_reference(model, prompt, int(ends[row]))
        assert decoded[row, :len(expected)].tolist() == expected
        assert (decoded[row, len(expected):] == 0).all()


def test_draws_follow_the_softmax_and_never_a_weightless_id():
    import tensorflow as tf

    from models.export import _draw

    logits = np.log(np.array([[0.5, 0.0, 0.3, 0.15, 0.05]], np.float32) + 1e-45)
    logits[0, 1] = -1e9  # banned or filtered: weight 0
    rows = tf.constant(np.repeat(logits, 20000, axis=0))
    drawn = _draw(rows, tf.constant([5, 6])).numpy()
    frequencies = np.bincount(drawn, minlength=5) / len(drawn)
    np.testing.assert_allclose(frequencies, [0.5, 0.0, 0.3, 0.15, 0.05], atol=0.015)
    assert frequencies[1] == 0.0
    assert (_draw(rows, tf.constant([5, 6])).numpy() == drawn).all()  # stateless in the seed
    assert not (_draw(rows, tf.constant([5, 7])).numpy() == drawn).all()


def test_draws_across_blocks_follow_the_softmax():
    """Ids in different blocks of `export._DRAW_BLOCK`, the last block part padding."""
    import tensorflow as tf

    from models.export import _DRAW_BLOCK, _draw

    vocab = 2 * _DRAW_BLOCK + 44
    ids, weights = [0, _DRAW_BLOCK - 1, _DRAW_BLOCK, 2 * _DRAW_BLOCK + 7, vocab - 1], \
        [0.1, 0.2, 0.25, 0.3, 0.15]
    logits = np.full((1, vocab), -1e9, np.float32)
    logits[0, ids] = np.log(weights)
    drawn = _draw(tf.constant(np.repeat(logits, 20000, axis=0)), tf.constant([3, 4])).numpy()
    frequencies = np.bincount(drawn, minlength=vocab) / len(drawn)
    np.testing.assert_allclose(frequencies[ids], weights, atol=0.015)
    assert frequencies.sum() == pytest.approx(frequencies[ids].sum())


def test_a_point_on_the_total_takes_the_last_id_of_any_weight():
    import tensorflow as tf

    from models.export import _draw

    # One id of weight 1 before weightless ones: whatever the point, that id.
    logits = tf.constant([[-1e9, 0.0, -1e9, -1e9]] * 500)
    assert set(_draw(logits, tf.constant([1, 2])).numpy().tolist()) == {1}
