"""Every family's import, proven equal to the reference implementation (transformers).

The reference (`.venv-ref`, `reference.py`) saves a tiny random checkpoint (GPT-2, Llama,
BERT's masked LM) with its tokenizer trained on local text, and computes the token ids of
300 varied strings and the logits and NLL of each framed as `[bos] + ids + [eos]`; lmpipe
imports the same directory and must agree: ids exactly, logits to 1e-4 (float32), and the
exported SavedModel's `score`, reloaded in a fresh process with only tensorflow and
tensorflow_text, to the NLL (BERT's: of the tokens the score hides, which the reference
scores on the same corrupted windows).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.checkpoints.helpers import (framed_logits, imported_model, imported_tokenizer,
                                       score_in_fresh_process)

FAMILIES = ["gpt2", "llama", "bert"]
WINDOW = 128


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, make_reference):
    reference = make_reference(request.param)
    model, checkpoint = imported_model(reference.directory)
    return request.param, reference, model, checkpoint


def test_imported_logits_equal_the_reference(family):
    name, reference, model, checkpoint = family
    assert checkpoint.model_type == name
    ours = framed_logits(model, reference.ids, reference.bos, reference.eos)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference.logits))
    scale = max(float(np.abs(b).max()) for b in reference.logits)
    assert scale > 1.0  # the perturbed weights give logits a wrong import could not hide in
    assert worst < 1e-4


def test_imported_tokenizer_ids_equal_the_reference(family):
    import tensorflow as tf

    name, reference, _, _ = family
    tokenizer = imported_tokenizer(reference.directory)
    ids = tf.function(tokenizer.tokenize)(tf.constant(reference.strings)).to_list()
    mismatched = [s for s, ours, theirs in zip(reference.strings, ids, reference.ids)
                  if ours != theirs]
    assert len(reference.strings) == 300 and mismatched == []
    if name == "bert":
        return  # WordPiece lower-cases and drops whitespace: not lossless by design
    # Lossless (byte-level BPE; SentencePiece with byte fallback and no normalization,
    # whose decoding drops leading whitespace with the dummy prefix), and the offsets add
    # up to each text's bytes (the transform's bits per byte).
    back = tf.function(tokenizer.detokenize)(tf.ragged.constant(ids)).numpy()
    kept = [i for i, s in enumerate(reference.strings) if name == "gpt2" or not s[:1].isspace()]
    assert len(kept) > 200
    assert [back[i].decode("utf-8") for i in kept] == [reference.strings[i] for i in kept]
    _, _, ends = tf.function(tokenizer.tokenize_with_offsets)(tf.constant(reference.strings))
    assert [row[-1] for row in ends.to_list() if row] == [
        len(s.encode()) for s, row in zip(reference.strings, ids) if row]


def test_exported_score_equals_the_reference_nll(family, tmp_path):
    from models.export import save_export

    name, reference, model, _ = family
    tokenizer = imported_tokenizer(reference.directory)
    save_export(model, tokenizer, WINDOW, str(tmp_path / "saved_model"))
    scored = score_in_fresh_process(tmp_path / "saved_model", reference.strings, tmp_path)
    assert not scored["keras_hub_imported"]
    if name == "bert":
        expected, counts = masked_reference_nll(reference, tokenizer.info, tmp_path)
        assert scored["num_tokens"] == counts and sum(counts) > 100
    else:
        expected = reference.nll
        assert scored["num_tokens"] == [len(ids) + 1 for ids in reference.ids]
    np.testing.assert_allclose(scored["nll"], expected, rtol=1e-5, atol=1e-4)


def masked_reference_nll(reference, info, tmp_path):
    """The reference's NLL of the tokens lmpipe's masked-LM `score` hides: each text's
    window corrupted as the export corrupts it (the objective, `SCORE_SEED`), then scored
    by the reference; and the count of hidden tokens per text."""
    import json

    import tensorflow as tf

    from models.export import SCORE_SEED
    from models.objectives import make_objective
    from tests.checkpoints.conftest import run_reference

    framed = [[reference.bos] + ids + [reference.eos] for ids in reference.ids]
    tokens = np.full((len(framed), WINDOW), info.pad_id, np.int32)
    segments = np.zeros_like(tokens)
    for i, row in enumerate(framed):
        tokens[i, :len(row)], segments[i, :len(row)] = row, 1
    objective = make_objective("masked", info.vocab_size, info.special_tokens)
    inputs, targets, weights = objective.prepare(
        {"token_ids": tokens, "segment_ids": segments}, tf.constant(SCORE_SEED, tf.int32))
    rows = [{"token_ids": t, "segment_ids": s, "targets": y, "weights": w} for t, s, y, w in zip(
        np.asarray(inputs["token_ids"]).tolist(), segments.tolist(),
        np.asarray(targets).tolist(), np.asarray(weights).tolist())]
    (tmp_path / "masked.json").write_text(json.dumps(rows))
    run_reference("masked-nll", reference.directory, tmp_path / "masked.json",
                  tmp_path / "masked_nll.json")
    nll = json.loads((tmp_path / "masked_nll.json").read_text())["nll"]
    return nll, [int(np.sum(np.asarray(weights)[i] > 0)) for i in range(len(rows))]
