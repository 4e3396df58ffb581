"""The attention mask and the causal LM targets derived from segment ids."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.conftest import tiny_lm
from tests.models.lm_data import reference_targets


def _random_segments(rng, batch=4, length=24):
    segments = np.zeros((batch, length), np.int32)
    for row in segments:
        cuts = np.sort(rng.choice(np.arange(1, length), size=3, replace=False))
        row[:cuts[0]], row[cuts[0]:cuts[1]], row[cuts[1]:cuts[2]] = 1, 2, 3
    return segments


def test_targets_and_weights_match_a_loop_reference():
    from models.segments import causal_lm_targets

    rng = np.random.default_rng(1)
    segments = _random_segments(rng)
    tokens = np.where(segments > 0, rng.integers(5, 300, segments.shape), 0).astype(np.int32)
    targets, weights = causal_lm_targets(tokens, segments)
    expected_targets, expected_weights = reference_targets(tokens, segments)
    np.testing.assert_array_equal(np.asarray(weights), expected_weights)
    np.testing.assert_array_equal(np.asarray(targets), expected_targets)
    # Each segment of length n contributes n - 1 targets; padding none.
    lengths = [np.bincount(row)[1:] for row in segments]
    assert np.asarray(weights).sum() == sum(int((n[n > 0] - 1).sum()) for n in lengths)


def test_document_mask_allows_exactly_same_segment_pairs():
    from models.segments import document_attention_mask

    segments = _random_segments(np.random.default_rng(2), batch=2, length=10)
    mask = np.asarray(document_attention_mask(segments))
    expected = np.array([[[a == b for b in row] for a in row] for row in segments])
    np.testing.assert_array_equal(mask, expected)
    assert mask.any(axis=-1).all(), "every query row keeps at least one key"


@pytest.mark.parametrize("document_masking", [True, False])
def test_documents_do_not_see_each_other_only_with_masking(packed_batch, document_masking):
    model = tiny_lm(document_masking=document_masking)
    changed = {k: v.copy() for k, v in packed_batch.items()}
    changed["token_ids"][0, :5] = (changed["token_ids"][0, :5] + 7) % 384  # first document
    before = np.asarray(model(packed_batch))
    after = np.asarray(model(changed))
    second_doc = slice(5, 12)
    differs = np.abs(before[0, second_doc] - after[0, second_doc]).max()
    if document_masking:
        assert differs == 0.0
    else:
        assert differs > 1e-4
    np.testing.assert_array_equal(before[1], after[1])


def test_padding_content_does_not_change_real_positions(packed_batch):
    model = tiny_lm()
    changed = {k: v.copy() for k, v in packed_batch.items()}
    changed["token_ids"][0, 12:] = 17
    before, after = np.asarray(model(packed_batch)), np.asarray(model(changed))
    np.testing.assert_array_equal(before[0, :12], after[0, :12])
