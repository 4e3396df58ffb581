"""Fine-tuning in the trainer: a classifier takes a pretrained LM's backbone, and a frozen
backbone is neither updated nor weight-decayed for exactly `task.freeze_backbone_steps`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core.config import ModelConfig, TaskConfig, TrainConfig
from pipeline.core.errors import UsageError

MODEL = ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=32)
VOCAB = 96
CLASSIFY = TaskConfig(type="classification", freeze_backbone_steps=3)


def _classifier(seed: int):
    import keras

    from models.factory import build_model

    keras.utils.set_random_seed(seed)
    return build_model(MODEL, CLASSIFY, VOCAB, num_classes=3)


def _values(variables) -> list[np.ndarray]:
    return [np.array(v.value) for v in variables]


def test_the_backbone_stays_frozen_for_exactly_its_steps_then_trains():
    import tensorflow as tf

    from components.train import optimization, tasks
    from components.train.loop import Trainer
    from models.objectives import objective_for

    strategy = tf.distribute.get_strategy()
    # AdamW with a large decay: a backbone that were only given zero gradients would shrink.
    config = TrainConfig(steps=6, batch_size=4, learning_rate=1e-2, optimizer="adamw",
                         weight_decay=0.5, warmup_steps=0)
    model = _classifier(0)
    optimizer = optimization.make_optimizer(config, model, config.steps)
    trainer = Trainer(model, optimizer, strategy, objective_for(MODEL, None, CLASSIFY),
                      config.seed, config.clip_norm,
                      freezer=tasks.task_for(CLASSIFY).freezer(model))
    rng = np.random.default_rng(0)
    batch = {"token_ids": rng.integers(4, VOCAB, (4, 8)).astype(np.int32),
             "segment_ids": np.ones((4, 8), np.int32), "label": np.array([0, 1, 2, 1], np.int32)}
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    backbone, head = model.backbone.trainable_variables, model.head_variables()
    assert len(backbone) + len(head) == len(model.trainable_variables) and len(head) == 2
    before_backbone, before_head = _values(backbone), _values(head)
    out = trainer.run_steps(iterator, 3)
    assert out["steps"] == 3
    for old, new in zip(before_backbone, _values(backbone)):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(o, n) for o, n in zip(before_head, _values(head)))
    trainer.run_steps(iterator, 1)
    moved = [not np.array_equal(o, n) for o, n in zip(before_backbone, _values(backbone))]
    assert all(moved), "every backbone variable trains once the freeze is over"


def test_no_freezer_unless_a_classifier_asks_for_one():
    from components.train import tasks

    model = _classifier(0)
    assert tasks.task_for(TaskConfig(type="classification")).freezer(model) is None
    assert tasks.task_for(CLASSIFY).freezer(model).steps == 3
    assert tasks.task_for(TaskConfig(type="text_to_text")).freezer(model) is None


def _pretrained(tmp_path, tokenizer_sha: str):
    """A causal LM saved as the export and the .keras file lay it out, with its record."""
    import keras
    import tensorflow as tf

    from models.factory import build_model

    keras.utils.set_random_seed(11)
    lm = build_model(MODEL, TaskConfig(), VOCAB)
    module = tf.Module()
    module.model = lm  # the export's tf.Module holds the task model under `model`
    saved = tmp_path / "lm" / "saved_model"
    tf.saved_model.save(module, str(saved))
    lm.save(str(tmp_path / "lm" / "model.keras"))
    record = {"tokenizer": {"sha256": tokenizer_sha}, "hyperparameters": {"task": {"type": "lm"}}}
    (tmp_path / "lm" / "train_summary.json").write_text(json.dumps(record))
    return lm


@pytest.mark.parametrize("source", ["lm", "lm/model.keras"])
def test_a_classifier_warm_starts_from_the_backbone_of_a_pretrained_lm(tmp_path, source):
    from components.train import tasks

    lm = _pretrained(tmp_path, "a" * 64)
    classifier = _classifier(5)
    head = _values(classifier.head_variables())
    task = tasks.task_for(CLASSIFY)
    loaded = task.load_warm_start(classifier, str(tmp_path / source), "a" * 64)
    assert loaded.endswith(":backbone")
    for theirs, ours in zip(_values(lm.backbone.weights), _values(classifier.backbone.weights)):
        np.testing.assert_array_equal(theirs, ours)
    for old, new in zip(head, _values(classifier.head_variables())):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(UsageError, match="another tokenizer"):
        task.load_warm_start(_classifier(6), str(tmp_path / source), "b" * 64)


def test_a_backbone_of_another_shape_is_refused_in_one_line(tmp_path):
    import keras

    from components.train import tasks
    from models.factory import build_model

    _pretrained(tmp_path, "a" * 64)
    keras.utils.set_random_seed(0)
    wider = build_model(ModelConfig(num_layers=1, hidden_dim=32, num_heads=2,
                                    max_sequence_length=32), CLASSIFY, VOCAB, num_classes=3)
    with pytest.raises(UsageError, match="backbone does not fit") as error:
        tasks.task_for(CLASSIFY).load_warm_start(wider, str(tmp_path / "lm"), "a" * 64)
    assert "\n" not in str(error.value)


def test_the_task_type_chooses_what_the_trainer_does_differently():
    from components.train import tasks
    from components.train.data import FeatureSpec

    classify = FeatureSpec(32, False, {"type": "classification", "labels": ["a", "b", "c"]})
    tasks.task_for(CLASSIFY).check_examples(classify)
    assert tasks.task_for(CLASSIFY).model_arguments(classify) == {"num_classes": 3}
    packed = FeatureSpec(32, False)
    tasks.task_for(TaskConfig()).check_examples(packed)
    assert tasks.task_for(TaskConfig()).model_arguments(packed) == {}
    with pytest.raises(UsageError, match="^task.type is 'classification' but the examples "
                                         "were made for 'lm'$"):
        tasks.task_for(CLASSIFY).check_examples(packed)
