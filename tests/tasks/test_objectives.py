"""The task objectives: the text-to-text loss mask and the classification weights."""

from __future__ import annotations

import numpy as np

from components.transform import task_examples


def _batch():
    """Two text-to-text examples framed as the transform frames them (L=12)."""
    rows = [task_examples.text_to_text_sequence(np.array([20, 21, 22]), np.array([40, 41]),
                                                np.array([7]), 12, 3, 2, 3, 0),
            task_examples.text_to_text_sequence(np.array([25]), np.array([45, 46, 47, 48]),
                                                np.array([7]), 12, 3, 2, 3, 0)]
    return {"token_ids": np.stack([r["token_ids"] for r in rows]).astype(np.int32),
            "segment_ids": np.stack([r["segment_ids"] for r in rows]).astype(np.int32),
            "target_start": np.array([r["target_start"] for r in rows], np.int32)}


def test_text_to_text_weights_only_the_predictions_of_target_tokens_and_eos():
    from models.objectives import TextToTextObjective

    batch = _batch()
    # [bos 20 21 22 sep | 40 41 eos] and [bos 25 sep | 45 46 47 eos] (the target cut to 3).
    assert batch["token_ids"][0].tolist() == [2, 20, 21, 22, 7, 40, 41, 3, 0, 0, 0, 0]
    assert batch["token_ids"][1].tolist() == [2, 25, 7, 45, 46, 47, 3, 0, 0, 0, 0, 0]
    inputs, targets, weights = TextToTextObjective().prepare(batch)
    weights, targets = np.asarray(weights), np.asarray(targets)
    # Position i predicts token i + 1: weighted exactly where that token is a target token
    # or the closing eos (independent count: from the sequences above).
    expected = np.zeros((2, 12), np.float32)
    expected[0, 4:7] = 1   # predicts 40, 41, eos
    expected[1, 2:6] = 1   # predicts 45, 46, 47, eos
    np.testing.assert_array_equal(weights, expected)
    np.testing.assert_array_equal(targets[0, 4:7], [40, 41, 3])
    np.testing.assert_array_equal(targets[1, 2:6], [45, 46, 47, 3])
    np.testing.assert_array_equal(np.asarray(inputs["token_ids"]), batch["token_ids"])


def test_the_text_to_text_loss_ignores_the_input_and_padding_positions():
    from models.objectives import token_nll
    from models.objectives import TextToTextObjective

    batch = _batch()
    _, targets, weights = TextToTextObjective().prepare(batch)
    logits = np.random.default_rng(0).normal(size=(2, 12, 64)).astype(np.float32)

    def loss(values):
        return float(np.sum(np.asarray(token_nll(values, targets)) * np.asarray(weights)))

    base = loss(logits)
    changed_input = logits.copy()
    changed_input[0, :4] += np.random.default_rng(1).normal(size=(4, 64)) * 5  # bos..22
    changed_input[:, 8:] += 3.0  # padding
    assert loss(changed_input) == base
    changed_target = logits.copy()
    changed_target[0, 5, 41] += 5.0  # the position that predicts 41
    assert loss(changed_target) < base


def test_classification_weights_skip_unknown_labels_and_empty_rows():
    from models.objectives import ClassificationObjective

    batch = {"token_ids": np.ones((3, 4), np.int32),
             "segment_ids": np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.int32),
             "label": np.array([2, -1, 1], np.int32)}
    inputs, targets, weights = ClassificationObjective().prepare(batch)
    np.testing.assert_array_equal(np.asarray(weights), [1.0, 0.0, 0.0])
    # Rows without a loss get target 0 (a valid index) and weight 0.
    np.testing.assert_array_equal(np.asarray(targets), [2, 0, 0])
    assert sorted(inputs) == ["segment_ids", "token_ids"]


def test_the_classifier_pools_the_last_real_token_or_the_mean():
    from models.classifier import SequencePooling

    hidden = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    segments = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.int32)
    last = np.asarray(SequencePooling("last")(hidden, segments))
    np.testing.assert_array_equal(last, hidden[[0, 1], [2, 3]])
    mean = np.asarray(SequencePooling("mean")(hidden, segments))
    np.testing.assert_allclose(mean, [hidden[0, :3].mean(0), hidden[1].mean(0)], rtol=1e-6)
    empty = np.asarray(SequencePooling("last")(hidden, np.zeros((2, 4), np.int32)))
    np.testing.assert_array_equal(empty, np.zeros((2, 3)))
