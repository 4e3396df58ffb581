"""What the trainer does differently per `task.type`: one object per task type.

`task_for` picks the object for `task.type` (as `models/objectives.py` `objective_for`
picks what the training step computes), and the session asks it for everything that
differs, so that `session.py` stays one code path:

- examples: they must have been made for this task type (`feature_spec.json` `task`).
- model arguments: a classifier's number of classes is its label vocabulary's size, which
  the examples artifact records (`feature_spec.json` `task.labels`).
- warm start: a language model starts from the whole pretrained model, and so does a
  text-to-text model, which is a causal LM (`warm_start.load_weights`); a classifier takes
  only the backbone of a pretrained LM (its head is new), and everything from a classifier
  trained on the same labels.
- freezing (`task.freeze_backbone_steps`, classification): `BackboneFreezer` zeroes the
  backbone's gradients and applies the update to the head only while the step is below
  the limit, so the backbone is neither moved nor weight-decayed; the decision is made from
  the checkpointed step inside the compiled step, so a resumed run freezes exactly as well.

The export needs no object here: `models/export.py` `save_export` chooses the signatures
from the examples' `task` entry.

Reading a model's training record needs no TensorFlow (the tokenizer import uses it).
"""

from __future__ import annotations

import os

from components.train import warm_start
from pipeline.core.contracts.model import training_record
from pipeline.core.errors import UsageError, first_line


class LanguageModelTask:
    """`task.type: lm`, and `text_to_text`, whose model is a causal LM on
    `[bos] input separator target [eos]`: the model is a language model, built, warm-started
    and trained whole.

    Args:
        task_config: `TaskConfig`.
    """

    def __init__(self, task_config):
        self.config = task_config

    def check_examples(self, spec) -> None:
        """The examples must have been made for this task.

        Args:
            spec: the examples' `data.FeatureSpec`.

        Raises:
            UsageError: they were made for another `task.type`.
        """
        made_for = (spec.task or {}).get("type", "lm")
        if made_for != self.config.type:
            raise UsageError(f"task.type is {self.config.type!r} but the examples were made "
                             f"for {made_for!r}")

    def model_arguments(self, spec) -> dict:
        """Extra `build_model` arguments for this task (none).

        Args:
            spec: the examples' `data.FeatureSpec`.

        Returns:
            Keyword arguments.
        """
        return {}

    def load_warm_start(self, model, source: str, tokenizer_sha256: str) -> str:
        """Overwrite `model`'s weights with those of the model at `source`.

        Args:
            model: the freshly built model (under the strategy's scope).
            source: a model artifact, SavedModel directory or `.keras` file.
            tokenizer_sha256: the digest of this run's tokenizer.

        Returns:
            What was read: `saved_model` or `keras`.

        Raises:
            UsageError: another tokenizer, or weights that do not fit.
        """
        return warm_start.load_weights(model, source, tokenizer_sha256)

    def freezer(self, model) -> BackboneFreezer | None:
        """The run's `BackboneFreezer`.

        Args:
            model: the freshly built model.

        Returns:
            None: nothing is frozen.
        """
        return None


class ClassificationTask(LanguageModelTask):
    """`task.type: classification`: a `SequenceClassifier`, a new head over an LM backbone."""

    def model_arguments(self, spec) -> dict:
        """Extra `build_model` arguments: the number of classes.

        Args:
            spec: the examples' `data.FeatureSpec` (its task entry lists the labels).

        Returns:
            {"num_classes"}.
        """
        return {"num_classes": len(spec.task["labels"])}

    def load_warm_start(self, model, source: str, tokenizer_sha256: str) -> str:
        """Overwrite `model`'s weights with those of a classifier trained on the same labels,
        or its backbone's with those of a pretrained LM's backbone.

        Args:
            model: the freshly built classifier (under the strategy's scope).
            source: a model artifact, SavedModel directory or `.keras` file.
            tokenizer_sha256: the digest of this run's tokenizer.

        Returns:
            What was read: `saved_model` or `keras`, with `:backbone` when only the backbone.

        Raises:
            UsageError: another tokenizer, or weights that do not fit.
        """
        if _is_classifier(source):
            return super().load_warm_start(model, source, tokenizer_sha256)
        warm_start.check_tokenizer(source, tokenizer_sha256)
        if os.path.isfile(source):
            _backbone_from_keras(model, source)
            return "keras:backbone"
        saved_model = warm_start.saved_model_dir(source)
        _backbone_from_saved_model(model, saved_model, source)
        return "saved_model:backbone"

    def freezer(self, model) -> BackboneFreezer | None:
        """The run's `BackboneFreezer`.

        Args:
            model: the freshly built classifier.

        Returns:
            The freezer, or None when `task.freeze_backbone_steps` is 0.
        """
        if self.config.freeze_backbone_steps == 0:
            return None
        return BackboneFreezer(model, self.config.freeze_backbone_steps)


# task.type -> what the trainer does for it.
TASKS = {"lm": LanguageModelTask, "text_to_text": LanguageModelTask,
         "classification": ClassificationTask}


def task_for(task_config) -> LanguageModelTask:
    """What the trainer does for `task.type`.

    Args:
        task_config: `TaskConfig`.

    Returns:
        The task type's object, holding `task_config`.
    """
    return TASKS[task_config.type](task_config)


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


def _is_classifier(source: str) -> bool:
    """Whether the model at `source` was trained as a classifier (its training record says;
    a record from before tasks has no task section)."""
    hyperparameters = (training_record(source) or {}).get("hyperparameters") or {}
    return (hyperparameters.get("task") or {}).get("type") == "classification"


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
