"""The bert family: BERT's masking recipe (statistics, exclusions, seeding, against a NumPy
re-implementation), the masked-LM loss against NumPy, and its SavedModel (masked-token
scoring, left-to-right mask filling)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models import lm_data
from tests.models.conftest import SPECIAL_TOKENS, tiny_model

VOCAB = 384
_U32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mix(x):
    """lowbias32 in uint64 NumPy arithmetic, truncated to 32 bits by hand."""
    x = np.asarray(x, np.uint64) & _U32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _U32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _U32
    return x ^ (x >> 16)


def _reference_uniforms(tokens, seed):
    """The three uniform streams of `models/corruption.py`, recomputed in NumPy."""
    positions = np.arange(1, tokens.shape[1] + 1, dtype=np.uint64)
    position_keys = _mix(positions * _GOLDEN)
    cells = _mix(((tokens.astype(np.uint64) * _GOLDEN) & _U32) ^ position_keys[None, :])
    row_keys = cells.sum(axis=1, keepdims=True) & _U32
    seed = (np.asarray(seed, np.int64) & _U32).astype(np.uint64)
    seed_key = _mix(_mix(seed[0]) ^ seed[1])
    bits = ((row_keys ^ seed_key) + position_keys[None, :]) & _U32
    streams = []
    for _ in range(3):
        bits = _mix(bits + _GOLDEN)
        streams.append((bits >> 8).astype(np.float64) / 2 ** 24)
    return streams


def _reference_masking(tokens, segments, seed):
    """BERT's recipe written as a loop over positions: (corrupted, chosen)."""
    choose, action, pick = _reference_uniforms(tokens, seed)
    special = set(SPECIAL_TOKENS.values())
    replacements = [i for i in range(VOCAB) if i not in special]
    corrupted, chosen = tokens.copy(), np.zeros(tokens.shape, bool)
    for b, i in np.ndindex(tokens.shape):
        if segments[b, i] == 0 or tokens[b, i] in special or choose[b, i] >= np.float32(0.15):
            continue
        chosen[b, i] = True
        if action[b, i] < np.float32(0.8):
            corrupted[b, i] = SPECIAL_TOKENS["mask"]
        elif action[b, i] < np.float32(0.8 + 0.1):
            corrupted[b, i] = replacements[min(int(pick[b, i] * len(replacements)),
                                               len(replacements) - 1)]
    return corrupted, chosen


def _objective():
    from models.objectives import MaskedLMObjective

    return MaskedLMObjective(VOCAB, SPECIAL_TOKENS)


def _packed(rng, batch, length):
    """Windows of documents `bos ... eos` with a padded tail, as transform packs them."""
    tokens = rng.integers(5, VOCAB, (batch, length)).astype(np.int32)
    segments = np.zeros((batch, length), np.int32)
    for row in range(batch):
        cuts = np.sort(rng.choice(np.arange(2, length - 2), size=2, replace=False))
        end = rng.integers(cuts[1] + 1, length + 1)
        for segment, (start, stop) in enumerate([(0, cuts[0]), (cuts[0], cuts[1]),
                                                 (cuts[1], end)], start=1):
            segments[row, start:stop] = segment
            tokens[row, start], tokens[row, stop - 1] = 2, 3
        tokens[row, end:] = 0
    return {"token_ids": tokens, "segment_ids": segments}


@pytest.fixture(scope="module")
def large_batch():
    return _packed(np.random.default_rng(0), 256, 128)


def _corrupt(batch, seed):
    inputs, targets, weights = _objective().prepare(batch, np.array(seed, np.int32))
    return np.asarray(inputs["token_ids"]), np.asarray(targets), np.asarray(weights) > 0


def test_masking_statistics_follow_the_bert_recipe(large_batch):
    tokens, segments = large_batch["token_ids"], large_batch["segment_ids"]
    corrupted, targets, chosen = _corrupt(large_batch, (3, 7))
    special = np.isin(tokens, list(SPECIAL_TOKENS.values()))
    candidates = (segments != 0) & ~special
    assert not (chosen & ~candidates).any(), "padding and special tokens are never chosen"
    np.testing.assert_array_equal(corrupted[~chosen], tokens[~chosen])
    np.testing.assert_array_equal(targets[chosen], tokens[chosen])
    assert chosen.sum() / candidates.sum() == pytest.approx(0.15, abs=0.01)
    masked = corrupted[chosen] == SPECIAL_TOKENS["mask"]
    kept = corrupted[chosen] == tokens[chosen]
    replaced = ~masked & ~kept
    assert masked.mean() == pytest.approx(0.8, abs=0.025)
    assert replaced.mean() == pytest.approx(0.1, abs=0.02)
    assert kept.mean() == pytest.approx(0.1, abs=0.02)
    randoms = corrupted[chosen][replaced]
    assert not np.isin(randoms, list(SPECIAL_TOKENS.values())).any()
    assert len(np.unique(randoms)) > 150, "random replacements spread over the vocabulary"


def test_masking_equals_a_numpy_reimplementation(large_batch):
    batch = {k: v[:32] for k, v in large_batch.items()}
    for seed in [(0, 0), (3, 7), (-1, 2 ** 31 - 1)]:
        corrupted, _, chosen = _corrupt(batch, seed)
        expected_corrupted, expected_chosen = _reference_masking(
            batch["token_ids"], batch["segment_ids"], seed)
        np.testing.assert_array_equal(chosen, expected_chosen)
        np.testing.assert_array_equal(corrupted, expected_corrupted)


def test_masking_is_seeded_and_independent_of_the_batch(large_batch):
    first = _corrupt(large_batch, (3, 7))
    again = _corrupt(large_batch, (3, 7))
    other = _corrupt(large_batch, (3, 8))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert (first[2] != other[2]).mean() > 0.1
    # A window is corrupted the same wherever it sits in the batch (and on any replica).
    order = np.random.default_rng(1).permutation(len(large_batch["token_ids"]))
    shuffled = _corrupt({k: v[order] for k, v in large_batch.items()}, (3, 7))
    for a, b in zip(first, shuffled):
        np.testing.assert_array_equal(a[order], b)


def test_masking_takes_the_trainers_tensor_seed(large_batch):
    import tensorflow as tf

    batch = {k: tf.constant(v[:8]) for k, v in large_batch.items()}
    seed = tf.stack([tf.constant(3, tf.int32), tf.cast(tf.Variable(7, dtype=tf.int64), tf.int32)])
    inputs, _, weights = tf.function(_objective().prepare)(batch, seed)
    corrupted, _, chosen = _corrupt({k: v[:8] for k, v in large_batch.items()}, (3, 7))
    np.testing.assert_array_equal(inputs["token_ids"].numpy(), corrupted)
    np.testing.assert_array_equal(weights.numpy() > 0, chosen)


def _log_softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_masked_lm_loss_equals_numpy_on_the_chosen_positions(large_batch):
    from models.objectives import token_nll

    model = tiny_model("bert", seed=2)
    batch = {k: v[:6, :64] for k, v in _packed(np.random.default_rng(5), 6, 64).items()}
    inputs, targets, weights = _objective().prepare(batch, np.array([1, 1], np.int32))
    loss = float(np.sum(np.asarray(token_nll(model(inputs), targets)) * np.asarray(weights))
                 / np.sum(np.asarray(weights)))

    corrupted, chosen = _reference_masking(batch["token_ids"], batch["segment_ids"], (1, 1))
    logits = np.asarray(model({"token_ids": corrupted, "segment_ids": batch["segment_ids"]}))
    log_probs = _log_softmax(logits)
    rows, cols = np.nonzero(chosen)
    expected = -log_probs[rows, cols, batch["token_ids"][rows, cols]].mean()
    assert len(rows) > 20
    assert loss == pytest.approx(expected, rel=1e-5)


WINDOW = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny bert, its tokenizer, eval records and its reloaded SavedModel."""
    import tensorflow as tf

    from models.export import save_export
    from models.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("bert_export")
    lm_data.write_tokenizer(root / "tokenizer")
    records = lm_data.write_examples(root / "examples", root / "tokenizer", length=WINDOW)
    model = tiny_model("bert", seed=7, hidden_dim=32, max_sequence_length=WINDOW)
    save_export(model, load_tokenizer(str(root / "tokenizer")), WINDOW, str(root / "saved"))
    return (model, lm_data.processor(root / "tokenizer"), records["eval"][:5],
            tf.saved_model.load(str(root / "saved")))


def _reference_sums(model, tokens, segments):
    """Masked-token NLL, count and correct argmax per window, with the export's seed."""
    corrupted, chosen = _reference_masking(tokens, segments, (0, 0))
    logits = np.asarray(model({"token_ids": corrupted, "segment_ids": segments}))
    log_probs = _log_softmax(logits)
    nll = -np.take_along_axis(log_probs, tokens[..., None].astype(int), -1)[..., 0]
    correct = logits.argmax(-1) == tokens
    return (nll * chosen).sum(1), chosen.sum(1), (correct & chosen).sum(1)


def test_score_examples_is_the_masked_token_nll(exported):
    import tensorflow as tf

    model, _, records, saved = exported
    examples = tf.constant([lm_data.to_example(r).SerializeToString() for r in records])
    scored = saved.signatures["score_examples"](examples=examples)
    tokens = np.stack([r["token_ids"] for r in records]).astype(np.int32)
    segments = np.stack([r["segment_ids"] for r in records]).astype(np.int32)
    nll, count, correct = _reference_sums(model, tokens, segments)
    np.testing.assert_allclose(scored["nll"].numpy(), nll, rtol=1e-4)
    assert scored["num_tokens"].numpy().tolist() == count.tolist()
    assert scored["num_correct"].numpy().tolist() == correct.tolist()
    assert count.sum() > 0


def test_score_texts_in_chunks_the_same_in_any_batch(exported):
    import tensorflow as tf

    model, sp, _, saved = exported
    texts = ["Return the square root of x.", "Decode JSON text into Python objects. " * 4]
    scored = saved.signatures["score"](text=tf.constant(texts))
    for i, text in enumerate(texts):
        sequence = [2] + sp.encode(text) + [3]
        chunks = [sequence[s:s + WINDOW] for s in range(0, len(sequence), WINDOW)]
        tokens = np.array([c + [0] * (WINDOW - len(c)) for c in chunks], np.int32)
        segments = np.array([[1] * len(c) + [0] * (WINDOW - len(c)) for c in chunks], np.int32)
        nll, count, _ = _reference_sums(model, tokens, segments)
        assert int(scored["num_tokens"][i]) == count.sum()
        assert float(scored["nll"][i]) == pytest.approx(nll.sum(), rel=1e-4)
    assert len(chunks) > 2 and int(scored["num_tokens"][1]) > 0
    alone = saved.signatures["score"](text=tf.constant(texts[1:]))
    assert float(alone["nll"][0]) == float(scored["nll"][1])


def _fill_reference(model, sp, prompt, new):
    """Left-to-right mask filling with a full forward pass per position, greedy."""
    prompt_ids = ([2] + sp.encode(prompt))[-(WINDOW - new - 1):]
    n = len(prompt_ids)
    tokens = prompt_ids + [4] * new + [3] + [0] * (WINDOW - n - new - 1)
    segments = np.array([[1] * (n + new + 1) + [0] * (WINDOW - n - new - 1)], np.int32)
    end = n + new
    for i in range(n, n + new):
        logits = np.asarray(model({"token_ids": np.array([tokens], np.int32),
                                   "segment_ids": segments}))[0, i].copy()
        logits[[0, 2, 4]] = -np.inf
        if int(logits.argmax()) == 3:
            end = i
            break
        tokens[i] = int(logits.argmax())
    return sp.decode(tokens[1:end])[len(sp.decode(prompt_ids[1:])):], end - n


def test_generate_fills_masks_left_to_right(exported):
    import tensorflow as tf

    model, sp, _, saved = exported
    prompts = ["Return the", "x " * 30]
    result = saved.signatures["generate"](
        prompt=tf.constant(prompts), max_new_tokens=tf.constant(5),
        temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
        seed=tf.constant(0))
    references = [_fill_reference(model, sp, p, 5) for p in prompts]
    assert [c.decode("utf-8") for c in result["completion"].numpy()] == [r for r, _ in references]
    assert sum(count for _, count in references) > 0
    assert result["new_tokens"].numpy().tolist() == [count for _, count in references]
    assert result["ended"].numpy().tolist() == [count < 5 for _, count in references]
