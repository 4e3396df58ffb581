"""The train component end to end on tiny inputs, and its SavedModel in a fresh process."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.core.config import ModelConfig, TaskConfig, TrainConfig
from pipeline.core.errors import ConfigError, UsageError
from tests.models import lm_data

MODEL = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=64)
TRAIN = TrainConfig(steps=30, batch_size=8, learning_rate=3e-3, warmup_steps=5, log_every=10,
                    eval_batches=4)
WINDOW = lm_data.SEQUENCE_LENGTH
BANNED = (0, 2, 4)  # pad, bos, [MASK] in the fixture tokenizer


def _artifact(kind, path):
    from pipeline.core.artifacts import Artifact

    return Artifact(type=kind, uri=str(path), fingerprint=kind)


def _run_train(root, out, hyperparameters=None, model=MODEL, train=TRAIN, warm_start=None,
               work_dir=None):
    from components import train as component
    from pipeline.local_runner import Runtime

    out.mkdir(parents=True, exist_ok=True)
    inputs = {"examples": _artifact("Examples", root / "examples"),
              "tokenizer": _artifact("Tokenizer", root / "tokenizer"),
              "hyperparameters": hyperparameters and _artifact("Hyperparameters", hyperparameters),
              "warm_start": warm_start}
    runtime = Runtime(run_id="test", root=str(root), work_dir=work_dir and str(work_dir))
    return component.run(inputs, {"model": str(out)}, runtime, model=model, task=TaskConfig(),
                         train=train)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, model dir, written examples) after one tiny training run."""
    root = tmp_path_factory.mktemp("train")
    lm_data.write_tokenizer(root / "tokenizer")
    records = lm_data.write_examples(root / "examples", root / "tokenizer")
    _run_train(root, root / "model")
    return root, root / "model", records


@pytest.fixture(scope="module")
def keras_model(trained):
    from models.factory import load_model

    return load_model(str(trained[1] / "model.keras"))


def _logits(model, tokens: list[int]) -> np.ndarray:
    """Logits [len, V] of one unpadded sequence."""
    ids = np.array([tokens], np.int32)
    return np.asarray(model({"token_ids": ids, "segment_ids": np.ones_like(ids)}))[0]


def test_model_artifact_files_and_summary(trained, keras_model):
    from components.train import summary as run_summary

    _, model_dir, records = trained
    summary = json.loads((model_dir / "train_summary.json").read_text())
    assert summary["steps"] == 30 and summary["tokens_seen"] == 30 * 8 * WINDOW
    assert summary["hyperparameters"]["source"] == "config"
    assert summary["hyperparameters"]["train"]["learning_rate"] == 3e-3
    assert summary["train_tokens_per_second"] > 0
    assert 0 < summary["compile_seconds"] <= summary["warmup_seconds"]
    # The default `train.jit_compile: auto` leaves a toy model uncompiled, and says so.
    assert summary["xla"]["setting"] == "auto" and summary["xla"]["compiled"] is False
    assert summary["final_train_loss"] < np.log(384)
    metrics = run_summary({"model": _artifact("Model", model_dir)})
    assert metrics == {"train_tokens_per_second": summary["train_tokens_per_second"]}
    with open(model_dir / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    assert float(rows[-1]["loss"]) == pytest.approx(summary["final_train_loss"])
    assert (model_dir / "saved_model" / "saved_model.pb").is_file()

    # The eval loss, recomputed in NumPy from model.keras on the same eval examples.
    in_file_order = records["eval"][0::2] + records["eval"][1::2]
    used = in_file_order[:TRAIN.eval_batches * TRAIN.batch_size]
    tokens = np.stack([r["token_ids"] for r in used]).astype(np.int32)
    segments = np.stack([r["segment_ids"] for r in used]).astype(np.int32)
    logits = np.asarray(keras_model({"token_ids": tokens, "segment_ids": segments}))
    targets, weights = lm_data.reference_targets(tokens, segments)
    expected = (lm_data.reference_nll(logits, targets) * weights).sum() / weights.sum()
    assert summary["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_tuned_hyperparameters_override_config(trained, tmp_path):
    root = trained[0]
    (tmp_path / "best.json").write_text(json.dumps(
        {"learning_rate": 0.01, "train.steps": 8, "model.hidden_dim": 8}))
    properties = _run_train(root, tmp_path / "model", hyperparameters=tmp_path)
    summary = json.loads((tmp_path / "model" / "train_summary.json").read_text())
    assert properties["model"]["hyperparameters_source"] == "tune"
    assert summary["hyperparameters"]["overrides"] == {
        "train.learning_rate": 0.01, "train.steps": 8, "model.hidden_dim": 8}
    assert summary["steps"] == 8 and summary["hyperparameters"]["model"]["hidden_dim"] == 8


@pytest.mark.parametrize("best, error, match", [
    ({"learning_rte": 0.1}, UsageError, "unknown hyperparameter 'learning_rte'"),
    ({"learning_rate": -1.0}, ConfigError, "config key 'train.learning_rate': must be > 0"),
    ({"model.num_heads": 3}, ConfigError, "config key 'model.hidden_dim'"),
])
def test_bad_tuned_hyperparameters_are_clear_errors(trained, tmp_path, best, error, match):
    (tmp_path / "best.json").write_text(json.dumps(best))
    with pytest.raises(error, match=match):
        _run_train(trained[0], tmp_path / "model", hyperparameters=tmp_path)


def test_examples_longer_than_the_model_are_a_usage_error(trained, tmp_path):
    small = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=16)
    with pytest.raises(UsageError, match="above model.max_sequence_length 16"):
        _run_train(trained[0], tmp_path / "model", model=small)


# Runs in a fresh interpreter with no project code importable: only tensorflow and
# tensorflow_text. Reads a JSON request, writes the signatures' outputs as JSON.
_SERVE = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

saved_model, request = sys.argv[1], json.load(open(sys.argv[2]))
model = tf.saved_model.load(saved_model)
out = {}
score = model.signatures["score"](text=tf.constant(request["texts"]))
out["score"] = {k: v.numpy().tolist() for k, v in score.items()}
examples = tf.constant([bytes.fromhex(e) for e in request["examples"]])
scored = model.signatures["score_examples"](examples=examples)
out["score_examples"] = {k: v.numpy().tolist() for k, v in scored.items()}
out["generate"] = {}
for name, args in request["generate"].items():
    result = model.signatures["generate"](
        prompt=tf.constant(request["prompts"]), max_new_tokens=tf.constant(args[0]),
        temperature=tf.constant(args[1]), top_k=tf.constant(args[2]),
        top_p=tf.constant(args[3]), seed=tf.constant(args[4]))
    out["generate"][name] = [c.decode("utf-8") for c in result["completion"].numpy()]
project = ("models", "components", "pipeline", "keras_hub", "tests")
out["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in project)
json.dump(out, sys.stdout)
"""

TEXTS = ["Return the square root of x.", "", "Decode JSON text into Python objects. " * 8]
PROMPTS = ["Return the", "Serialize obj to a JSON", "x " * 40]
GENERATE = {
    "greedy": [12, 0.0, 0, 1.0, 0], "greedy_again": [12, 0.0, 0, 1.0, 5],
    "top_k_1": [12, 1.5, 1, 1.0, 3], "top_p_tiny": [12, 1.5, 0, 1e-6, 3],
    "sample_a": [12, 1.0, 50, 0.95, 1], "sample_a_again": [12, 1.0, 50, 0.95, 1],
    "sample_b": [12, 1.0, 50, 0.95, 2], "none": [0, 0.0, 0, 1.0, 0],
}


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    root, model_dir, records = trained
    work = tmp_path_factory.mktemp("serve")
    examples = [lm_data.to_example(r).SerializeToString().hex() for r in records["eval"][:6]]
    (work / "request.json").write_text(json.dumps(
        {"texts": TEXTS, "prompts": PROMPTS, "examples": examples, "generate": GENERATE}))
    process = subprocess.run(
        [sys.executable, "-c", _SERVE, str(model_dir / "saved_model"), "request.json"],
        cwd=work, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in lm_data.env().items() if k != "PYTHONPATH"})
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout)


def test_fresh_process_loads_with_only_tensorflow_and_tensorflow_text(served):
    assert served["project_modules"] == []


def test_score_matches_the_keras_model_chunk_by_chunk(trained, keras_model, served):
    sp = lm_data.processor(trained[0] / "tokenizer")
    for i, text in enumerate(TEXTS):
        sequence = [2] + sp.encode(text) + [3]
        nll = 0.0
        # Windows of WINDOW tokens overlapping by one: each token after bos predicted once.
        for start in range(0, len(sequence) - 1, WINDOW - 1):
            chunk = sequence[start:start + WINDOW]
            logits = _logits(keras_model, chunk)
            nll += lm_data.reference_nll(logits[:-1], np.array(chunk[1:])).sum()
        assert served["score"]["num_tokens"][i] == len(sequence) - 1
        assert served["score"]["nll"][i] == pytest.approx(nll, rel=1e-4)
        assert served["score"]["num_bytes"][i] == len(text.encode("utf-8"))
    assert len([2] + sp.encode(TEXTS[2]) + [3]) > WINDOW  # the chunked path was exercised


def test_score_examples_matches_numpy(trained, keras_model, served):
    records = trained[2]["eval"][:6]
    tokens = np.stack([r["token_ids"] for r in records]).astype(np.int32)
    segments = np.stack([r["segment_ids"] for r in records]).astype(np.int32)
    logits = np.asarray(keras_model({"token_ids": tokens, "segment_ids": segments}))
    targets, weights = lm_data.reference_targets(tokens, segments)
    nll = (lm_data.reference_nll(logits, targets) * weights).sum(axis=1)
    correct = ((logits.argmax(-1) == targets) * weights).sum(axis=1)
    result = served["score_examples"]
    np.testing.assert_allclose(result["nll"], nll, rtol=1e-4)
    assert result["num_tokens"] == weights.sum(axis=1).astype(int).tolist()
    assert result["num_correct"] == correct.astype(int).tolist()
    assert result["num_bytes"] == [r["num_bytes"] for r in records]


def _greedy_reference(model, sp, prompt: str, max_new: int) -> str:
    prompt_ids = ([2] + sp.encode(prompt))[-(WINDOW - max_new):]
    tokens = list(prompt_ids)
    for _ in range(max_new):
        logits = _logits(model, tokens)[-1].copy()
        logits[list(BANNED)] = -np.inf
        chosen = int(logits.argmax())
        if chosen == 3:
            break
        tokens.append(chosen)
    prefix = sp.decode([t for t in prompt_ids if t != 2])
    return sp.decode([t for t in tokens if t != 2])[len(prefix):]


def test_greedy_generation_matches_an_uncached_keras_loop(trained, keras_model, served):
    sp = lm_data.processor(trained[0] / "tokenizer")
    expected = [_greedy_reference(keras_model, sp, p, 12) for p in PROMPTS]
    generated = served["generate"]
    assert generated["greedy"] == expected
    assert generated["greedy_again"] == expected
    assert generated["top_k_1"] == expected and generated["top_p_tiny"] == expected
    assert generated["none"] == ["", "", ""]
    assert any(text.strip() for text in expected)


def test_sampling_is_reproducible_by_seed(served):
    generated = served["generate"]
    assert generated["sample_a"] == generated["sample_a_again"]
    assert generated["sample_a"] != generated["sample_b"]
    assert all(isinstance(text, str) for text in generated["sample_a"])


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(trained, tmp_path):
    from components.train.loop import TrainingDiverged

    absurd = TrainConfig(steps=50, batch_size=8, optimizer="sgd", learning_rate=1e12,
                         clip_norm=None, log_every=1, checkpoint_every=1, keep_checkpoints=2)
    work = tmp_path / "work"
    with pytest.raises(TrainingDiverged) as caught:
        _run_train(trained[0], tmp_path / "model", train=absurd, work_dir=work)
    message = str(caught.value)
    step = int(message.split(" at step ")[1].split()[0])
    assert 1 < step < 50 and ("loss is nan" in message or "loss is inf" in message
                              or "norm is" in message)
    checkpoints = work / "checkpoints"
    assert f"The last good checkpoint (step {step - 1}) is kept in {checkpoints}." in message
    index = (checkpoints / "checkpoint").read_text()
    assert f'model_checkpoint_path: "ckpt-{step - 1}"' in index
    assert not (tmp_path / "model" / "train_summary.json").exists()


@pytest.mark.parametrize("overrides, key, expected", [
    ({"nesterov": True}, "train.nesterov", "is an option of train.optimizer 'momentum'"),
    ({"batch_size": 12, "grad_accum_steps": 8}, "train.grad_accum_steps", "must divide"),
    ({"early_stopping_patience": 3}, "train.early_stopping_patience", "needs train.eval_every"),
    ({"steps": None}, "train.steps", "set train.steps or train.max_tokens"),
    ({"strategy": "tpu", "precision": "mixed_float16"}, "train.precision", "mixed_bfloat16"),
    ({"optimizer": "adagrad"}, "train.optimizer", "adafactor"),
    ({"warmup_steps": 30}, "train.warmup_steps", "must be in [0, train.steps)"),
])
def test_bad_train_combinations_are_config_errors(overrides, key, expected):
    from pipeline.core.configio import build

    raw = {"steps": 30, "batch_size": 8, **overrides}
    with pytest.raises(ConfigError) as caught:
        build(TrainConfig, raw, "train")
    assert caught.value.key == key and expected in caught.value.expected


def test_budget_errors_come_before_any_data_is_read(trained, tmp_path):
    import shutil

    examples = tmp_path / "examples"
    shutil.copytree(trained[0] / "examples", examples)
    for shard in examples.glob("*.tfrecord"):
        shard.write_bytes(b"not a TFRecord")  # reading any of it would fail differently
    shutil.copytree(trained[0] / "tokenizer", tmp_path / "tokenizer")
    by_tokens = TrainConfig(steps=None, max_tokens=8 * WINDOW * 5, batch_size=8, warmup_steps=5)
    with pytest.raises(ConfigError, match=r"'train.warmup_steps': must be below the run's 5 "
                                          r"steps \(from train.max_tokens\), got 5"):
        _run_train(tmp_path, tmp_path / "model", train=by_tokens)


def test_a_bad_combination_exits_2_with_one_line(tiny_config_file):
    from tests.conftest import run_lmpipe

    result = run_lmpipe("run", "--config", tiny_config_file, "--set", "train.nesterov=true")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lmpipe: error: config key 'train.nesterov': is an option of train.optimizer "
        "'momentum' (got 'adamw')"]


def test_token_budget_mixed_precision_accumulation_and_calls_of_several_steps(trained,
                                                                              tmp_path):
    from models.factory import load_model

    config = TrainConfig(steps=None, max_tokens=8 * WINDOW * 6 + 1, batch_size=8,
                         warmup_steps=2, log_every=3, eval_batches=2, grad_accum_steps=2,
                         steps_per_execution=4, precision="mixed_bfloat16", eval_every=6)
    _run_train(trained[0], tmp_path / "model", train=config)
    summary = json.loads((tmp_path / "model" / "train_summary.json").read_text())
    assert summary["steps"] == 7 and summary["tokens_seen"] == 7 * 8 * WINDOW
    assert summary["budget"]["decided_by"] == "max_tokens"
    assert summary["hyperparameters"]["resolved"]["optimizer"]["config"]["learning_rate"][
        "total"] == 7
    assert [e["step"] for e in summary["evals"]] == [6]
    with open(tmp_path / "model" / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), bool(r["eval_loss"])) for r in rows] == [
        (3, False), (6, False), (6, True), (7, False)]
    # Trained in bfloat16, served in float32.
    model = load_model(str(tmp_path / "model" / "model.keras"))
    assert model.compute_dtype == "float32" and summary["final_train_loss"] < np.log(384)
