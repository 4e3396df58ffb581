"""BERT checkpoints: as a classifier's backbone end to end (`train.init_from` with
`task.type: classification`), a bare encoder without its prediction head, and what the
backbone cannot reproduce. Equality with the reference: `test_equality.py`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.checkpoints.helpers import imported_model, read_safetensors, write_safetensors
from tests.checkpoints.test_gpt2 import edit_config, refusal
from tests.conftest import run_lmpipe, tiny_documents, tiny_raw_config, write_jsonl

CLASSIFY_IN_FRESH_PROCESS = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["classify"](text=tf.constant(["Return the square root of x.",
                                                     "Encode Python objects as JSON text."]))
print(json.dumps([label.decode() for label in out["label"].numpy()]))
"""


@pytest.fixture(scope="module")
def bert(make_reference):
    return make_reference("bert")


@pytest.fixture
def checkpoint_copy(bert, tmp_path):
    target = tmp_path / "checkpoint"
    shutil.copytree(bert.directory, target)
    return target


@pytest.mark.slow
def test_a_classifier_fine_tunes_from_a_bert_checkpoint(bert, tmp_path):
    docs = [{"text": d["text"], "package": d["domain"]} for d in tiny_documents(6)]
    corpus = write_jsonl(tmp_path / "labeled" / "labeled.jsonl", docs).parent
    raw = tiny_raw_config(tmp_path, corpus)
    del raw["model"]
    raw["data"].update(label_field="package", domain_field=None)
    raw["task"] = {"type": "classification", "pooling": "mean", "min_accuracy": 0.0}
    raw["train"].update(init_from=str(bert.directory), steps=20)
    config = tmp_path / "classify.yaml"
    config.write_text(json.dumps(raw))
    result = run_lmpipe("run", "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported wordpiece (400 ids) from the checkpoint" in result.stderr
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    model_dir = record["components"]["train"]["outputs"]["model"]
    summary = json.loads(open(f"{model_dir}/train_summary.json").read())
    # The backbone's 37 weights come from the checkpoint; the head is new.
    assert summary["init_from"]["weights_assigned"] == 37
    assert summary["hyperparameters"]["model"]["family"] == "bert"
    assert record["metrics"]["eval_accuracy"] is not None
    pushed = record["pushed_model"]
    labels = subprocess.run([sys.executable, "-c", CLASSIFY_IN_FRESH_PROCESS, pushed],
                            capture_output=True, text=True, timeout=300)
    assert labels.returncode == 0, labels.stderr[-2000:]
    assert set(json.loads(labels.stdout.strip().splitlines()[-1])) <= {"math", "os", "json"}


def test_a_bare_encoder_starts_a_classifier_but_not_a_masked_lm(bert, checkpoint_copy):
    from models.checkpoints import load_weights, read_checkpoint

    tensors = read_safetensors(checkpoint_copy / "model.safetensors")
    bare = {name: value for name, value in tensors.items() if not name.startswith("cls.")}
    write_safetensors(checkpoint_copy / "model.safetensors", bare)
    classifier, _ = imported_model(checkpoint_copy, task_type="classification")
    reference, _ = imported_model(bert.directory)
    ours = {w.path: np.asarray(w) for w in classifier.backbone.weights}
    theirs = {w.path: np.asarray(w) for w in reference.backbone.weights}
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[path], theirs[path]) for path in ours)
    message = refusal(load_weights, reference, read_checkpoint(checkpoint_copy))
    assert "tensor cls.predictions.bias is missing" in message


@pytest.mark.parametrize("changes, named", [
    ({"hidden_act": "gelu_new"}, 'hidden_act="gelu_new"'),
    ({"position_embedding_type": "relative_key"}, 'position_embedding_type="relative_key"'),
    ({"is_decoder": True}, "is_decoder=true"),
])
def test_settings_the_backbone_cannot_express_are_refused(checkpoint_copy, changes, named):
    from models.checkpoints import read_checkpoint

    edit_config(checkpoint_copy, **changes)
    assert named in refusal(read_checkpoint, checkpoint_copy)


def test_a_vocabulary_that_does_not_fit_is_refused(checkpoint_copy):
    from models.checkpoints import read_checkpoint, tokenizer_of

    vocab = (checkpoint_copy / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (checkpoint_copy / "vocab.txt").write_text("\n".join(vocab + ["extra"]) + "\n",
                                               encoding="utf-8")
    message = refusal(tokenizer_of, read_checkpoint(checkpoint_copy))
    assert "vocab.txt: the tokenizer has 401 ids, config.json's vocab_size is 400" in message
    without_mask = [token if token != "[MASK]" else "[MASKED]" for token in vocab]
    (checkpoint_copy / "vocab.txt").write_text("\n".join(without_mask) + "\n", encoding="utf-8")
    assert "vocab.txt: no [MASK] token" in refusal(tokenizer_of, read_checkpoint(checkpoint_copy))


def test_a_bert_checkpoint_cannot_start_text_to_text(bert, tmp_path):
    from components.tokenizer.checkpoint import source
    from tests.conftest import build_config

    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["train"]["init_from"] = str(bert.directory)
    raw["task"] = {"type": "text_to_text", "max_target_tokens": 8}
    raw["data"]["target_field"] = "answer"
    message = refusal(source, build_config(raw))
    assert "is a BERT encoder, which cannot continue a text causally" in message
