"""The llama family: grouped-query attention with rotary positions against NumPy, the key/value
cache, and its SavedModel (cached greedy decoding equals an uncached loop; scoring)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models import lm_data
from tests.models.conftest import tiny_model


def _rotate(x, positions, wavelength):
    """Rotary positions in NumPy: feature pairs (i, i + D/2) turn by position * freq_i."""
    dim = x.shape[-1]
    freqs = wavelength ** (-np.arange(0, dim, 2) / dim)
    angles = positions[:, None] * freqs[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[None, :, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[None, :, None, :]
    half = dim // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _reference_attention(layer, x, mask, start, kv_head_of):
    """Causal attention in float64 loops; query head h reads key/value head kv_head_of(h)."""
    weights = {name: np.asarray(getattr(layer, name).kernel, np.float64)
               for name in ("query_dense", "key_dense", "value_dense", "output_dense")}
    x = x.astype(np.float64)
    positions = start + np.arange(x.shape[1], dtype=np.float64)
    q = _rotate(np.einsum("btd,dhk->bthk", x, weights["query_dense"]), positions,
                layer.rope_max_wavelength)
    k = _rotate(np.einsum("btd,dhk->bthk", x, weights["key_dense"]), positions,
                layer.rope_max_wavelength)
    v = np.einsum("btd,dhk->bthk", x, weights["value_dense"])
    length = x.shape[1]
    allowed = np.tril(np.ones((length, length), bool))[None] & mask
    heads = []
    for h in range(layer.num_heads):
        kv = kv_head_of(h)
        scores = np.einsum("btd,bsd->bts", q[:, :, h], k[:, :, kv]) / np.sqrt(layer.head_dim)
        scores = np.where(allowed, scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        heads.append(np.einsum("bts,bsd->btd", probs, v[:, :, kv]))
    return np.einsum("bthk,hkd->btd", np.stack(heads, axis=2), weights["output_dense"])


@pytest.fixture(scope="module")
def gqa_layer():
    """Four query heads sharing two key/value heads of width 4, on a width-16 stream."""
    import keras

    from models.attention import CachedGroupedQueryAttention

    keras.utils.set_random_seed(5)
    layer = CachedGroupedQueryAttention(num_heads=4, num_key_value_heads=2, head_dim=4,
                                        rope_max_wavelength=100.0)
    layer.build((None, None, 16))
    return layer


def test_grouped_query_projection_shapes(gqa_layer):
    assert tuple(gqa_layer.query_dense.kernel.shape) == (16, 4, 4)
    assert tuple(gqa_layer.key_dense.kernel.shape) == (16, 2, 4)
    assert tuple(gqa_layer.value_dense.kernel.shape) == (16, 2, 4)
    assert tuple(gqa_layer.output_dense.kernel.shape) == (4, 4, 16)
    assert all(len(w.shape) != 1 for w in gqa_layer.weights), "no biases"


def test_attention_matches_numpy_with_shared_key_value_heads(gqa_layer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    segments = np.array([[1] * 4 + [2] * 5, [1] * 9])
    mask = segments[:, :, None] == segments[:, None, :]
    out = np.asarray(gqa_layer(x, attention_mask=mask))
    # Heads 0, 1 read key/value head 0 and heads 2, 3 head 1 (groups of two).
    expected = _reference_attention(gqa_layer, x, mask, 0, lambda h: h // 2)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    interleaved = _reference_attention(gqa_layer, x, mask, 0, lambda h: h % 2)
    assert np.abs(out - interleaved).max() > 1e-3


def test_rotary_scores_depend_only_on_relative_position():
    import keras_hub

    rotary = keras_hub.layers.RotaryEmbedding(max_wavelength=100.0)
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(2, 1, 6, 1, 8)).astype(np.float32)
    scores = [np.einsum("btd,bsd->bts", np.asarray(rotary(q, start_index=s))[:, :, 0],
                        np.asarray(rotary(k, start_index=s))[:, :, 0]) for s in (0, 7)]
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-4)
    np.testing.assert_allclose(np.asarray(rotary(q, start_index=3)),
                               _rotate(q, 3.0 + np.arange(6), 100.0), atol=1e-5)


def test_cached_decoding_matches_the_full_forward_pass():
    model = tiny_model("llama", seed=4, num_layers=2, num_kv_heads=1)
    cache = model.empty_cache(2, 12)
    # Per layer: [B, k/v, L, kv heads, head dim].
    assert [tuple(layer.shape) for layer in cache] == [(2, 2, 12, 1, 8)] * 2
    tokens = np.random.default_rng(4).integers(5, 384, (2, 12)).astype(np.int32)
    full = np.asarray(model({"token_ids": tokens, "segment_ids": np.ones_like(tokens)}))
    logits, cache = model.call_with_cache(tokens[:, :5], cache, 0)
    steps = [np.asarray(logits)]
    for i in range(5, 12):
        logits, cache = model.call_with_cache(tokens[:, i:i + 1], cache, i)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_fewer_key_value_heads_mean_fewer_parameters():
    full = tiny_model("llama", num_heads=4, hidden_dim=32)
    grouped = tiny_model("llama", num_heads=4, hidden_dim=32, num_kv_heads=1)
    # Keys and values lose three of four heads of width 8 each.
    assert full.count_params() - grouped.count_params() == 2 * 32 * 3 * 8


WINDOW = 16
PROMPTS = ["Return the", "Serialize obj to a JSON", "x " * 30]
TEXTS = ["Return the square root of x.", "Decode JSON text into Python objects. " * 3]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny llama with grouped heads, its tokenizer and its reloaded SavedModel."""
    import tensorflow as tf

    from models.export import save_export
    from models.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("llama_export")
    lm_data.write_tokenizer(root / "tokenizer")
    model = tiny_model("llama", seed=7, num_heads=4, hidden_dim=32, num_kv_heads=2,
                       max_sequence_length=WINDOW)
    save_export(model, load_tokenizer(str(root / "tokenizer")), WINDOW, str(root / "saved"))
    return model, lm_data.processor(root / "tokenizer"), tf.saved_model.load(str(root / "saved"))


def _logits(model, tokens):
    ids = np.array([tokens], np.int32)
    return np.asarray(model({"token_ids": ids, "segment_ids": np.ones_like(ids)}))[0]


def _greedy_reference(model, sp, prompt, max_new):
    """Greedy decoding by re-running the whole sequence for every token (no cache)."""
    prompt_ids = ([2] + sp.encode(prompt))[-(WINDOW - max_new):]
    tokens = list(prompt_ids)
    for _ in range(max_new):
        logits = _logits(model, tokens)[-1].copy()
        logits[[0, 2, 4]] = -np.inf  # pad, bos and mask are never generated
        if int(logits.argmax()) == 3:
            break
        tokens.append(int(logits.argmax()))
    prefix = sp.decode(prompt_ids[1:])
    return sp.decode(tokens[1:])[len(prefix):], len(tokens) - len(prompt_ids)


def test_cached_greedy_generation_equals_an_uncached_loop(exported):
    import tensorflow as tf

    model, sp, saved = exported
    result = saved.signatures["generate"](
        prompt=tf.constant(PROMPTS), max_new_tokens=tf.constant(6),
        temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
        seed=tf.constant(0))
    completions = [c.decode("utf-8") for c in result["completion"].numpy()]
    references = [_greedy_reference(model, sp, p, 6) for p in PROMPTS]
    assert completions == [text for text, _ in references]
    assert sum(count for _, count in references) > 0
    # It says how many tokens it made and whether it stopped at eos (streaming relies on it).
    assert result["new_tokens"].numpy().tolist() == [count for _, count in references]
    assert result["ended"].numpy().tolist() == [count < 6 for _, count in references]


def test_score_matches_the_keras_model(exported):
    import tensorflow as tf

    model, sp, saved = exported
    scored = saved.signatures["score"](text=tf.constant(TEXTS))
    for i, text in enumerate(TEXTS):
        sequence = [2] + sp.encode(text) + [3]
        nll = 0.0
        for start in range(0, len(sequence) - 1, WINDOW - 1):
            chunk = sequence[start:start + WINDOW]
            nll += lm_data.reference_nll(_logits(model, chunk)[:-1], np.array(chunk[1:])).sum()
        assert int(scored["num_tokens"][i]) == len(sequence) - 1
        assert float(scored["nll"][i]) == pytest.approx(nll, rel=1e-4)
    assert len([2] + sp.encode(TEXTS[1]) + [3]) > WINDOW  # the chunked path was exercised
