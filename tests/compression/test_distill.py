"""Distillation: the loss against NumPy, the teacher input, refusals, and that it helps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.core.config import DistillConfig, PruneConfig, TrainConfig
from pipeline.core.errors import ConfigError
from tests.compression import helpers


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _numpy_loss(student, teacher, targets, alpha, temperature):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE, per token."""
    log_t = _log_softmax(teacher / temperature)
    log_s = _log_softmax(student / temperature)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(-1)
    ce = -np.take_along_axis(_log_softmax(student), targets[..., None], -1)[..., 0]
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce, ce


@pytest.mark.parametrize("alpha, temperature", [(0.5, 1.0), (0.3, 2.5), (1.0, 4.0), (0.0, 2.0)])
def test_loss_and_its_gradient_match_numpy(alpha, temperature):
    import tensorflow as tf

    from components.train.distill import distillation_loss
    from models.objectives import token_nll

    rng = np.random.default_rng(3)
    student = rng.normal(size=(2, 5, 11)) * 2
    teacher = rng.normal(size=(2, 5, 11)) * 3
    targets = rng.integers(0, 11, size=(2, 5))
    expected, ce = _numpy_loss(student, teacher, targets, alpha, temperature)
    logits = tf.constant(student, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        nll = token_nll(logits, tf.constant(targets))
        loss = distillation_loss(logits, tf.constant(teacher, tf.float32), nll, alpha, temperature)
    np.testing.assert_allclose(nll.numpy(), ce, rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-6)
    # d/ds [T^2 KL] = T (softmax(s/T) - softmax(t/T)); d/ds CE = softmax(s) - onehot(y).
    soft = np.exp(_log_softmax(student / temperature)) - np.exp(_log_softmax(teacher / temperature))
    hard = np.exp(_log_softmax(student)) - np.eye(11)[targets]
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(),
                               alpha * temperature * soft + (1 - alpha) * hard, atol=1e-5)


def test_alpha_zero_trains_exactly_as_without_a_teacher():
    from components.train.distill import Distiller
    from components.train.strategy import make_strategy
    from tests.components.train.helpers import make_trainer, repeat, weights
    from tests.compression.test_pruning import _batch

    strategy, _ = make_strategy("default")
    config = TrainConfig(steps=5, batch_size=8, learning_rate=1e-2, warmup_steps=0)
    teacher = make_trainer(strategy, replace(config, seed=9), helpers.TEACHER).model
    teacher.trainable = False
    runs = {}
    for name, alpha in (("plain", None), ("alpha0", 0.0), ("alpha0.5", 0.5)):
        # The same seed: the same initial student every time.
        trainer = make_trainer(strategy, config)
        trainer.distiller = None if alpha is None else Distiller(teacher, alpha, 1.0)
        loss = trainer.run_steps(iter(repeat(_batch())), 3)["loss"]
        runs[name] = (loss, weights(trainer))
    # alpha 0 is plain cross-entropy: the same run, step for step.
    assert runs["alpha0"][0] == pytest.approx(runs["plain"][0], rel=1e-6)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(runs["alpha0"][1], runs["plain"][1]))
    assert max(np.abs(a - b).max() for a, b in zip(runs["alpha0.5"][1], runs["plain"][1])) > 1e-3


def test_latest_pushed_resolves_to_the_newest_version_unless_it_is_our_own(tmp_path):
    from components.train.distill import resolve
    from pipeline.core.contracts.model import resolve as warm_resolve

    serving = tmp_path / "serving"
    with pytest.raises(ConfigError, match="'train.distill.teacher': 'latest_pushed' needs a "
                                          "pushed model in push.serving_dir"):
        resolve("latest_pushed", str(serving), "key")
    with pytest.raises(ConfigError, match="'train.distill.teacher': no model at "):
        resolve(str(tmp_path / "missing"), str(serving), "key")
    path = tmp_path / "teacher.keras"
    path.write_bytes(b"weights")
    teacher_by_path = resolve(str(path), str(serving), "key")
    assert teacher_by_path.uri == str(path)
    assert teacher_by_path.fingerprint == warm_resolve(str(path), "x", "key").fingerprint
    for number, base in ((1, "someone"), (2, "key")):
        version = serving / str(number)
        version.mkdir(parents=True)
        (version / "saved_model.pb").write_bytes(b"model %d" % number)
        (version / "model_card.json").write_text(json.dumps({
            "model": {"saved_model_sha256": f"digest{number}"},
            "training": {"distill": {"teacher": {"base_key": base,
                                                 "artifact": teacher_by_path.to_json()}}}}))
    newest = resolve("latest_pushed", str(serving), "other-key")
    assert newest.uri == str(serving / "2") and newest.properties["version"] == 2
    assert newest.properties["model_sha256"] == "digest2"
    # Version 2 is the student this very execution pushed: its teacher stays the teacher.
    assert resolve("latest_pushed", str(serving), "key") == teacher_by_path


def test_a_teacher_with_another_tokenizer_is_a_config_error(trained, tmp_path):
    from components.train.distill import resolve

    teacher = trained[1]
    helpers.write_inputs(tmp_path, vocab_size=383)
    train = replace(helpers.TRAIN, distill=DistillConfig(teacher=str(teacher)))
    with pytest.raises(ConfigError, match=r"config key 'train.distill.teacher': \S+ was trained "
                                          r"with another tokenizer \(sha256 [0-9a-f]{12}, this "
                                          r"run's is [0-9a-f]{12}\)"):
        helpers.run_train(tmp_path, tmp_path / "student", train=train,
                          teacher=resolve(str(teacher), "unused", "key"))
    assert not (tmp_path / "student" / "train_summary.json").exists()


@pytest.mark.slow
def test_a_distilled_student_beats_the_same_student_without_a_teacher(tmp_path):
    """Same student, seed, data order and tokens; only the loss differs. Measured here: a
    gap of 0.08-0.09 nats on seeds 0-2 (eval loss about 3.1-3.2); the test asks for 0.03
    on two seeds."""
    from components.train.distill import resolve

    helpers.write_inputs(tmp_path)
    teacher_train = replace(helpers.TRAIN, steps=120, learning_rate=1e-2)
    teacher_summary = helpers.run_train(tmp_path, tmp_path / "teacher", helpers.TEACHER,
                                        teacher_train)
    teacher = resolve(str(tmp_path / "teacher"), "unused", "key")
    for seed in (0, 1):
        train = replace(helpers.TRAIN, steps=40, learning_rate=1e-2, seed=seed)
        plain = helpers.run_train(tmp_path, tmp_path / f"plain{seed}", train=train)
        distilled = helpers.run_train(
            tmp_path, tmp_path / f"distilled{seed}", teacher=teacher,
            train=replace(train, distill=DistillConfig(teacher="x", alpha=1.0, temperature=1.0)))
        assert distilled["tokens_seen"] == plain["tokens_seen"]
        assert distilled["eval_loss"] < plain["eval_loss"] - 0.03, (seed, plain, distilled)
        assert teacher_summary["eval_loss"] < distilled["eval_loss"]


def test_a_distilled_pruned_run_records_its_teacher_and_resumes_exactly(trained, tmp_path):
    """Checkpoints at 4, 8, 12; the masks are fixed after step 6. Resuming at 8 must end
    with the very weights of the uninterrupted run: without restored masks the pruned
    weights would come back to life at step 9 (the teacher is rebuilt, not checkpointed)."""
    from components.train.distill import resolve

    root, teacher_dir, _ = trained
    teacher = resolve(str(teacher_dir), "unused", "key")
    train = replace(helpers.TRAIN, steps=12, checkpoint_every=4, keep_checkpoints=3,
                    distill=DistillConfig(teacher="x", alpha=0.25, temperature=2.0),
                    prune=PruneConfig(target_sparsity=0.5, begin_step=2, end_step=6,
                                      frequency=2))
    work = tmp_path / "work"
    whole = helpers.run_train(root, tmp_path / "whole", train=train, teacher=teacher,
                              work_dir=work)

    recorded = whole["distill"]
    teacher_summary = json.loads((teacher_dir / "train_summary.json").read_text())
    assert (recorded["alpha"], recorded["temperature"]) == (0.25, 2.0)
    assert recorded["teacher"]["source"] == str(teacher_dir)
    assert recorded["teacher"]["base_key"] == "key"
    assert recorded["teacher"]["artifact"] == teacher.to_json()
    assert recorded["teacher"]["model"] == teacher_summary["hyperparameters"]["model"]
    assert recorded["teacher"]["parameters"] == teacher_summary["parameters"]
    assert (recorded["teacher"]["variant"], recorded["teacher"]["loaded"]) == ("float",
                                                                                "saved_model")
    # The teacher's eval loss, on the same eval batches, is the one its own run measured.
    assert recorded["teacher"]["eval_loss"] == pytest.approx(teacher_summary["eval_loss"],
                                                             rel=1e-6)
    assert whole["parameters"] < teacher_summary["parameters"]
    assert whole["pruning"]["measured_sparsity"] == 0.5

    checkpoints = work / "checkpoints"
    for path in checkpoints.glob("ckpt-12*"):
        path.unlink()
    (checkpoints / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-4"\n'
        'all_model_checkpoint_paths: "ckpt-8"\n')
    resumed = helpers.run_train(root, tmp_path / "resumed", train=train, teacher=teacher,
                                work_dir=work)
    assert resumed["resumed_from_step"] == 8 and resumed["steps"] == 12
    assert resumed["weights_sha256"] == whole["weights_sha256"]
