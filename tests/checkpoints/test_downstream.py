"""Downstream paths from a pretrained checkpoint, through the train component: text-to-text
fine-tuning (`task.type: text_to_text`, `train.init_from`) with a checkpoint as the
distillation teacher (`train.distill.teacher`); a teacher with another tokenizer refused
in one line; a checkpoint teacher fingerprinted by its files.

One training run carries both checks (the suite's time budget): the student starts from
a GPT-2 checkpoint and is distilled from a second one with the same tokenizer files; its
pushed SavedModel generates, in a fresh process with only tensorflow and
tensorflow_text, what greedy decoding with the checkpoint's tokenizer gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.core.config import DistillConfig, ModelConfig, TaskConfig, TrainConfig
from pipeline.core.errors import ConfigError
from tests.checkpoints.helpers import (imported_model, imported_tokenizer, read_safetensors,
                                       write_safetensors)
from tests.conftest import tiny_documents

WINDOW = 48
TASK = TaskConfig(type="text_to_text", max_target_tokens=6)
TRAIN = TrainConfig(steps=3, batch_size=4, learning_rate=1e-3, warmup_steps=0, log_every=1,
                    eval_batches=4, checkpoint_every=None,
                    distill=DistillConfig(alpha=0.5, temperature=2.0))
PROMPTS = ["Return the square root of x.", "Serialize obj to a JSON formatted string."]

# Run in a fresh interpreter: no project module, no Keras, only the two imports.
GENERATE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["generate"](
    prompt=tf.constant(json.loads(sys.argv[2])), max_new_tokens=tf.constant(6),
    temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
    seed=tf.constant(0))
print(json.dumps({"completions": [t.hex() for t in out["completion"].numpy()],
                  "keras_hub_imported": "keras_hub" in sys.modules}))
"""


@pytest.fixture(scope="module")
def gpt2(make_reference):
    return make_reference("gpt2")


@pytest.fixture(scope="module")
def inputs(gpt2, tmp_path_factory):
    """The checkpoint's tokenizer as a tokenizer artifact, text-to-text examples of the tiny
    corpus (input: the text, target: its domain; every fifth document eval) made with it
    as the transform makes them, and a second GPT-2 checkpoint: the reference's
    tokenizer files with other weights (the student's start)."""
    from models.checkpoints import read_checkpoint, tokenizer_of
    from pipeline.core.contracts.tokenizer import TokenizerInfo, write_info

    root = tmp_path_factory.mktemp("downstream")
    fields, model = tokenizer_of(read_checkpoint(str(gpt2.directory)))
    info = TokenizerInfo(**fields)
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / info.model_file).write_bytes(model)
    write_info(str(root / "tokenizer"), info)
    task = write_examples(root / "examples", imported_tokenizer(gpt2.directory), info)
    student = root / "student_checkpoint"
    shutil.copytree(gpt2.directory, student)
    tensors = read_safetensors(student / "model.safetensors")
    rng = np.random.default_rng(5)
    write_safetensors(student / "model.safetensors", {
        name: value + 0.1 * rng.standard_normal(value.shape).astype(np.float32)
        for name, value in tensors.items()})
    return root, student, task


def write_examples(directory, tokenizer, info) -> dict:
    """Train and eval shards of text-to-text examples and their feature spec; the task entry."""
    import tensorflow as tf

    from components.shared.example_wire import encode_example
    from components.transform import task_examples
    from pipeline.core.contracts import examples

    documents = tiny_documents()
    tokenize = tf.function(tokenizer.tokenize)
    texts = tokenize(tf.constant([d["text"] for d in documents])).to_list()
    targets = tokenize(tf.constant([d["domain"] for d in documents])).to_list()
    separator = tokenize(tf.constant([TASK.separator])).to_list()[0]
    directory.mkdir()
    splits = {}
    for split, keep in (("train", lambda i: i % 5), ("eval", lambda i: i % 5 == 0)):
        name = f"{split}-00000-of-00001.tfrecord"
        rows = [task_examples.text_to_text_sequence(
            np.array(texts[i]), np.array(targets[i]), np.array(separator), WINDOW,
            TASK.max_target_tokens, info.bos_id, info.eos_id, info.pad_id)
            for i in range(len(documents)) if keep(i)]
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for row in rows:
                writer.write(encode_example(
                    {"token_ids": row["token_ids"], "segment_ids": row["segment_ids"],
                     "num_bytes": [1], "target_start": [row["target_start"]]},
                    {"domain": "", "length_bucket": "", "input_text": "", "target_text": ""}))
        splits[split] = {"shards": [name], "examples": len(rows), "rows": rows}
    task = {"type": "text_to_text", "separator": TASK.separator, "separator_ids": separator,
            "max_target_tokens": TASK.max_target_tokens,
            "input_budget": task_examples.input_budget(WINDOW, separator, TASK.max_target_tokens)}
    listed = {name: {"shards": entry["shards"], "examples": entry["examples"]}
              for name, entry in splits.items()}
    examples.write_feature_spec(str(directory), examples.feature_spec(
        WINDOW, info.pad_id, False, listed, [128], task))
    return {**task, "eval_rows": splits["eval"]["rows"]}


def run_train(root, out, teacher, init_from) -> dict:
    """The train component on `root`'s inputs, as the runner calls it."""
    from components import train as component
    from pipeline.core.artifacts import Artifact
    from pipeline.local_runner import Runtime

    inputs = {name: Artifact(type=kind, uri=str(root / name), fingerprint=name)
              for name, kind in (("examples", "Examples"), ("tokenizer", "Tokenizer"))}
    inputs.update(hyperparameters=None, warm_start=None, teacher=teacher, init_from=init_from)
    out.mkdir(parents=True)
    component.run(inputs, {"model": str(out)}, Runtime(run_id="test", root=str(root)),
                  model=ModelConfig(), task=TASK, train=TRAIN)
    return json.loads((out / "train_summary.json").read_text())


def target_nll(model, info, rows) -> float:
    """Mean NLL of the target tokens and eos of `rows` under `model` (the text-to-text
    objective's weights), in nats."""
    from models.objectives import objective_for

    batch = {"token_ids": np.stack([r["token_ids"] for r in rows]).astype(np.int32),
             "segment_ids": np.stack([r["segment_ids"] for r in rows]).astype(np.int32),
             "target_start": np.array([r["target_start"] for r in rows], np.int32)}
    _, targets, weights = objective_for(ModelConfig(family="gpt"), info, TASK).prepare(batch)
    logits = np.asarray(model({"token_ids": batch["token_ids"],
                               "segment_ids": batch["segment_ids"]}), np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, np.asarray(targets)[..., None], -1)[..., 0]
    weights = np.asarray(weights)
    return float((nll * weights).sum() / weights.sum())


def greedy_completion(model, tokenizer, task: dict, text: str) -> str:
    """What `generate` must answer (its bytes, in hex): [bos] + input[:budget] +
    separator, then greedy decoding by full forward passes until eos, decoded with the
    checkpoint's tokenizer."""
    import tensorflow as tf

    info = tokenizer.info
    ids = tf.function(tokenizer.tokenize)(tf.constant([text])).to_list()[0]
    tokens = [info.bos_id, *ids[:task["input_budget"]], *task["separator_ids"]]
    generated = []
    for _ in range(6):
        segments = np.ones((1, len(tokens)), np.int32)
        logits = np.asarray(model({"token_ids": np.array([tokens], np.int32),
                                   "segment_ids": segments}))[0, -1]
        generated.append(int(np.argmax(logits)))
        if generated[-1] == info.eos_id:
            generated.pop()
            break
        tokens.append(generated[-1])
    # Hex: byte-level BPE ids of a barely trained model may end inside a UTF-8 character.
    return tf.function(tokenizer.detokenize)(tf.constant([generated], tf.int32)).numpy()[0].hex()


def test_text_to_text_fine_tunes_a_checkpoint_distilled_from_another(gpt2, inputs):
    import keras

    from components.train.distill import resolve
    from pipeline.core.contracts.model import resolve_checkpoint

    root, student, task = inputs
    teacher = resolve(str(gpt2.directory), "unused", "key")
    assert (teacher.type, teacher.fingerprint) == ("Checkpoint", resolve_checkpoint(
        str(gpt2.directory)).fingerprint)
    summary = run_train(root, root / "model", teacher, resolve_checkpoint(str(student)))
    assert summary["init_from"]["directory"] == str(student)
    assert summary["hyperparameters"]["task"]["type"] == "text_to_text"
    recorded = summary["distill"]["teacher"]
    assert recorded["source"] == str(gpt2.directory) and recorded["loaded"] == "checkpoint"
    assert recorded["checkpoint"] == {"layout": "huggingface", "model_type": "gpt2",
                                      "weights_assigned": 36}
    # The teacher computes what the checkpoint does (its import is proven equal to the
    # reference in test_equality.py): its recorded eval loss is the imported model's NLL
    # of the eval targets; the student, from another checkpoint, scores them otherwise.
    tokenizer = imported_tokenizer(gpt2.directory)
    rows = task["eval_rows"][:TRAIN.batch_size * TRAIN.eval_batches]
    expected = target_nll(imported_model(gpt2.directory)[0], tokenizer.info, rows)
    assert recorded["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(summary["eval_loss"] - expected) > 1e-2
    # The exported generator carries the checkpoint's tokenizer: in a fresh process it
    # answers what the trained model and that tokenizer give here.
    trained = keras.saving.load_model(root / "model" / "model.keras")
    result = subprocess.run([sys.executable, "-c", GENERATE, str(root / "model" / "saved_model"),
                             json.dumps(PROMPTS)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert not out["keras_hub_imported"]
    assert out["completions"] == [greedy_completion(trained, tokenizer, task, p) for p in PROMPTS]


def test_a_checkpoint_teacher_with_another_tokenizer_is_refused(make_reference, inputs):
    from components.train.distill import load_teacher, resolve
    from components.train.strategy import make_strategy
    from pipeline.core.contracts.tokenizer import tokenizer_digest

    root = inputs[0]
    llama = make_reference("llama")
    teacher = resolve(str(llama.directory), "unused", "key")
    ours = tokenizer_digest(str(root / "tokenizer"))
    with pytest.raises(ConfigError) as caught:
        load_teacher(teacher, ours, 400, ModelConfig(), WINDOW, make_strategy("default")[0],
                     "float32")
    message = str(caught.value)
    assert "\n" not in message and "'train.distill.teacher'" in message
    assert f"the checkpoint {llama.directory} has another tokenizer" in message
    assert f"this run's is {ours[:12]}" in message


def test_a_checkpoint_teacher_is_fingerprinted_by_its_files(gpt2, tmp_path):
    from components.train.distill import resolve

    directory = tmp_path / "teacher"
    shutil.copytree(gpt2.directory, directory)
    first = resolve(str(directory), "unused", "key").fingerprint
    assert resolve(str(directory), "unused", "key").fingerprint == first
    os.utime(directory / "model.safetensors", ns=(1, 1))
    assert resolve(str(directory), "unused", "key").fingerprint != first
