"""The task exports in a fresh process that imports only tensorflow and tensorflow_text:
`classify` on raw strings, and text to text's `generate` and `generate_examples`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from components.shared.example_wire import encode_example
from components.transform import task_examples
from pipeline.core.config import ModelConfig, TaskConfig
from tests.models import lm_data

WINDOW = 24
LABELS = ["json", "math", "os"]
SEPARATOR_IDS = [7, 8]
MAX_TARGET = 5
TEXTS = ["Return the square root of x.", "Serialize obj to a JSON formatted string.", "",
         "Create a directory named path. " * 12]

# Run in a fresh interpreter: no project module, no Keras, only the two imports.
_CLASSIFY = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["classify"](text=tf.constant(json.loads(sys.argv[2])))
result = {k: v.numpy().tolist() for k, v in out.items()}
result["signatures"] = sorted(model.signatures)
print(json.dumps(result, default=lambda b: b.decode("utf-8", "replace")))
"""
_GENERATE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["generate"](
    prompt=tf.constant(json.loads(sys.argv[2])), max_new_tokens=tf.constant(6),
    temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
    seed=tf.constant(0))
result = {"generate": [t.decode("utf-8", "replace") for t in out["completion"].numpy()]}
examples = tf.constant([bytes.fromhex(h) for h in json.loads(sys.argv[3])])
out = model.signatures["generate_examples"](examples=examples)
result["generate_examples"] = [t.decode("utf-8", "replace") for t in out["prediction"].numpy()]
result["signatures"] = sorted(model.signatures)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from models.tokenizer import load_tokenizer

    directory = tmp_path_factory.mktemp("tokenizer")
    lm_data.write_tokenizer(directory)
    return load_tokenizer(str(directory)), lm_data.processor(directory)


def _model(task_type: str, vocab_size: int, **arguments):
    import keras

    from models.factory import build_model

    keras.utils.set_random_seed(3)
    config = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=32)
    return build_model(config, TaskConfig(type=task_type), vocab_size, **arguments)


def _fresh(script: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, timeout=300, env=lm_data.env())
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _greedy(model, prompt: list[int], steps: int, banned: list[int], eos: int) -> list[int]:
    """Greedy decoding by full forward passes (no cache), the reference for `generate`."""
    tokens = list(prompt)
    for _ in range(steps):
        if len(tokens) >= WINDOW:
            break
        ids = np.zeros((1, WINDOW), np.int32)
        ids[0, :len(tokens)] = tokens
        segments = (np.arange(WINDOW) < len(tokens)).astype(np.int32)[None]
        logits = np.array(model({"token_ids": ids, "segment_ids": segments}))[0, len(tokens) - 1]
        logits[banned] = -np.inf
        tokens.append(int(np.argmax(logits)))
        if tokens[-1] == eos:
            break
    return tokens


def _completion(spm, prompt: list[int], tokens: list[int], eos: int) -> str:
    generated = tokens[len(prompt):]
    generated = generated[:generated.index(eos)] if eos in generated else generated
    # pad, bos and eos decode to nothing (unk, id 1, decodes to " ⁇ " in both).
    prefix = spm.decode([t for t in prompt if t not in (0, 2, 3)])
    return spm.decode([t for t in prompt + generated if t not in (0, 2, 3)])[len(prefix):]


def test_classify_serves_raw_strings_in_a_fresh_process(tmp_path, tokenizer):
    from models.export import save_export

    text_tokenizer, spm = tokenizer
    classifier = _model("classification", text_tokenizer.info.vocab_size,
                        num_classes=len(LABELS))
    save_export(classifier, text_tokenizer, WINDOW, str(tmp_path / "classifier"),
                {"type": "classification", "labels": LABELS})
    out = _fresh(_CLASSIFY, str(tmp_path / "classifier"), json.dumps(TEXTS))
    assert out["signatures"] == ["classify", "classify_examples"]
    # The same framing ([bos] + ids[:L-2] + [eos]) and network, computed here.
    ids = np.zeros((len(TEXTS), WINDOW), np.int32)
    for i, text in enumerate(TEXTS):
        framed = [2, *spm.encode(text)[:WINDOW - 2], 3]
        ids[i, :len(framed)] = framed
    assert (ids[-1] != 0).all()  # the long text was cut to the window
    logits = np.asarray(classifier({"token_ids": ids, "segment_ids": (ids != 0).astype(np.int32)}),
                        np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(np.sum(out["probabilities"], axis=1), 1.0, atol=1e-5)
    assert out["label_id"] == expected.argmax(axis=1).tolist()
    assert out["label"] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert out["classes"] == [LABELS] * len(TEXTS)


@pytest.mark.slow
def test_text_to_text_generate_serves_raw_inputs_in_a_fresh_process(tmp_path, tokenizer):
    from models.export import save_export

    text_tokenizer, spm = tokenizer
    generator = _model("text_to_text", text_tokenizer.info.vocab_size)
    budget = task_examples.input_budget(WINDOW, SEPARATOR_IDS, MAX_TARGET)
    save_export(generator, text_tokenizer, WINDOW, str(tmp_path / "generator"),
                {"type": "text_to_text", "separator_ids": SEPARATOR_IDS,
                 "input_budget": budget, "max_target_tokens": MAX_TARGET})
    rows = [task_examples.text_to_text_sequence(np.array(spm.encode(t)), np.array([40, 41]),
                                                np.array(SEPARATOR_IDS), WINDOW, MAX_TARGET,
                                                2, 3, 0) for t in TEXTS[:2]]
    records = [encode_example(
        {"token_ids": r["token_ids"], "segment_ids": r["segment_ids"], "num_bytes": [0],
         "target_start": [r["target_start"]]},
        {"domain": "", "length_bucket": "", "input_text": "", "target_text": ""}) for r in rows]
    out = _fresh(_GENERATE, str(tmp_path / "generator"), json.dumps(TEXTS),
                 json.dumps([r.hex() for r in records]))
    assert out["signatures"] == ["generate", "generate_examples", "score", "score_examples"]
    banned = [0, 2, 4]  # pad, bos, mask: never emitted
    # generate: the prompt is [bos] + input[:budget] + separator, then greedy decoding.
    for i, text in enumerate(TEXTS):
        prompt = [2, *spm.encode(text)[:budget], *SEPARATOR_IDS]
        tokens = _greedy(generator, prompt, 6, banned, 3)
        assert out["generate"][i] == _completion(spm, prompt, tokens, 3), text
    # generate_examples: from the example's own prompt, at most T tokens and eos.
    for i, row in enumerate(rows):
        prompt = row["token_ids"][:row["target_start"]].tolist()
        tokens = _greedy(generator, prompt, MAX_TARGET + 1, banned, 3)
        assert out["generate_examples"][i] == _completion(spm, prompt, tokens, 3)
