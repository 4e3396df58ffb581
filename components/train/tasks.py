"""What the trainer does differently for the fine-tuning tasks (`task.type`).

The session asks here for a task's model arguments, its warm start, its frozen backbone
and its export, so that `session.py` stays one code path:

- model arguments: a classifier's number of classes is its label vocabulary's size, which
  the examples artifact records (`feature_spec.json` `task.labels`).
- warm start: a classifier takes only the backbone of a pretrained LM (its head is new);
  from a classifier trained on the same labels it takes everything. A text-to-text model
  is a causal LM and starts from the whole pretrained LM (`warm_start.load_weights`).
- freezing (`task.freeze_backbone_steps`): `BackboneFreezer` zeroes the backbone's
  gradients and applies the update to the head only while the step is below the limit,
  so the backbone is neither moved nor weight-decayed; the decision is made from the
  checkpointed step inside the compiled step, so a resumed run freezes exactly as well.
- export: `models/task_export.py` (`classify`; text to text's `generate`).

Reading a model's training record needs no TensorFlow (the tokenizer import uses it).
"""

from __future__ import annotations

import os

from components.train.warm_start import check_tokenizer
from pipeline.core.contracts.model import training_record
from pipeline.core.errors import UsageError, first_line


def recorded_task(record: dict | None) -> dict:
    """The task section a training record holds ({} when it predates tasks)."""
    return ((record or {}).get("hyperparameters") or {}).get("task") or {}


def model_arguments(spec) -> dict:
    """Extra `build_model` arguments for the examples' task (the number of classes).

    Args:
        spec: the examples' `data.FeatureSpec`.
    """
    task = spec.task or {}
    if task.get("type") == "classification":
        return {"num_classes": len(task["labels"])}
    return {}


def check_examples(spec, task_config) -> None:
    """The examples must have been made for this task.

    Raises:
        UsageError: they were made for another `task.type`.
    """
    made_for = (spec.task or {}).get("type", "lm")
    if made_for != task_config.type:
        raise UsageError(f"task.type is {task_config.type!r} but the examples were made for "
                         f"{made_for!r}")


def load_warm_start(model, source: str, tokenizer_sha256: str, task_config) -> str:
    """Overwrite `model`'s pretrained part with the weights of the model at `source`.

    Args:
        model: the freshly built task model (under the strategy's scope).
        source: a model artifact, SavedModel directory or `.keras` file.
        tokenizer_sha256: the digest of this run's tokenizer.
        task_config: `TaskConfig`.

    Returns:
        What was read: `saved_model` or `keras`, with `:backbone` when only the backbone.

    Raises:
        UsageError: another tokenizer, or weights that do not fit.
    """
    from components.train import warm_start

    if task_config.type != "classification" or _is_classifier(source):
        return warm_start.load_weights(model, source, tokenizer_sha256)
    check_tokenizer(source, tokenizer_sha256)
    if os.path.isfile(source):
        _backbone_from_keras(model, source)
        return "keras:backbone"
    saved_model = warm_start.saved_model_dir(source)
    _backbone_from_saved_model(model, saved_model, source)
    return "saved_model:backbone"


def _is_classifier(source: str) -> bool:
    return recorded_task(training_record(source)).get("type") == "classification"


def _backbone_from_saved_model(model, saved_model: str, source: str) -> None:
    import tensorflow as tf

    # The export's checkpoint holds the task model under `model`, its backbone under
    # `model/backbone`: a stand-in with only that dependency reads just the backbone.
    stand_in = tf.Module()
    stand_in.backbone = model.backbone
    prefix = os.path.join(saved_model, "variables", "variables")
    try:
        status = tf.train.Checkpoint(model=stand_in).read(prefix)
        status.assert_existing_objects_matched()
    except (IndexError, tf.errors.OpError) as err:
        # TensorFlow reports a truncated file as IndexError, a garbled one as OpError.
        raise UsageError(f"train.warm_start {source}: cannot read its weights "
                         f"({first_line(err, 300)})") from None
    except (AssertionError, ValueError) as err:
        raise UsageError(f"train.warm_start {source}: its backbone does not fit this model "
                         f"({first_line(err, 300)}); the model section must match the "
                         "pretrained one") from None


def _backbone_from_keras(model, path: str) -> None:
    from models.factory import load_model

    try:
        source = load_model(path).backbone
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"train.warm_start {path}: cannot load its backbone "
                         f"({str(err).strip()[:300]})") from None
    theirs = {v.path: v for v in source.weights}
    for variable in model.backbone.weights:
        match = theirs.get(variable.path)
        if match is None or tuple(match.shape) != tuple(variable.shape):
            raise UsageError(f"train.warm_start {path}: its backbone does not fit this model "
                             f"({variable.path} {tuple(variable.shape)}); the model section "
                             "must match the pretrained one")
        variable.assign(match.value)


class BackboneFreezer:
    """Trains only the head for the first `steps` optimizer steps.

    Args:
        model: the task model (a `SequenceClassifier`, with `head_variables()`).
        steps: `task.freeze_backbone_steps`.
    """

    def __init__(self, model, steps: int):
        self.steps = steps
        self.variables = list(model.trainable_variables)
        head = {id(v) for v in model.head_variables()}
        self.is_head = [id(v) in head for v in self.variables]

    def _frozen(self, step):
        import tensorflow as tf

        return tf.less(step, tf.cast(self.steps, step.dtype))

    def mask_gradients(self, grads: list, step) -> list:
        """The gradients with the backbone's set to zero while it is frozen (so clipping
        and the logged norm see the head's only)."""
        import tensorflow as tf

        thawed = tf.logical_not(self._frozen(step))
        return [g if head else g * tf.cast(thawed, g.dtype) for g, head in zip(grads, self.is_head)]

    def apply(self, strategy, replica_apply, grads, step) -> None:
        """Apply the update (cross-replica context, inside the compiled step): to the head's
        variables only while frozen, to all of them afterwards.

        Args:
            strategy: the tf.distribute strategy.
            replica_apply: the trainer's `(grads, variables=None) -> None` per-replica apply.
            grads: the step's (per-replica) gradients, in `model.trainable_variables` order.
            step: the trainer's step variable.
        """
        import tensorflow as tf

        head_grads = [g for g, head in zip(grads, self.is_head) if head]
        head_vars = [v for v, head in zip(self.variables, self.is_head) if head]

        def head_only():
            strategy.run(lambda g: replica_apply(g, head_vars), args=(head_grads,))
            return tf.constant(0)

        def everything():
            strategy.run(replica_apply, args=(grads,))
            return tf.constant(0)

        tf.cond(self._frozen(step), head_only, everything)


def freezer(model, task_config) -> BackboneFreezer | None:
    """The run's `BackboneFreezer`, or None when nothing is frozen."""
    if task_config.type != "classification" or task_config.freeze_backbone_steps == 0:
        return None
    return BackboneFreezer(model, task_config.freeze_backbone_steps)


def save_export(model, tokenizer, spec, task_config, directory: str) -> None:
    """Write the task's servable SavedModel (the LM's for `task.type: lm`).

    Args:
        model: the trained float32 Keras model.
        tokenizer: its `TextTokenizer`.
        spec: the examples' `data.FeatureSpec` (window, task entry).
        task_config: `TaskConfig`.
        directory: the SavedModel directory to create.
    """
    if task_config.type == "lm":
        from models.export import save_export as save_lm_export

        save_lm_export(model, tokenizer, spec.sequence_length, directory)
        return
    from models.task_export import save_task_export

    save_task_export(model, tokenizer, spec.sequence_length, spec.task, directory)
