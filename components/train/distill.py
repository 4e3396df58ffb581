"""`train.distill`: train the configured model (the student) to match a teacher's predictions.

Loss, per target token (the objective's targets and weights, e.g. next tokens):

    loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

with z_t, z_s the teacher's and the student's logits over the vocabulary, T =
`train.distill.temperature`, alpha = `train.distill.alpha`, CE the usual token NLL and
KL(p || q) = sum_v p_v (log p_v - log q_v) in nats. The T^2 factor keeps the gradient of
the soft term on the scale of the hard one as T changes (Hinton et al., 2015). The loop
averages it over the global batch's target tokens as it does the NLL; the logged training
loss and the eval loss stay the plain NLL, comparable with runs without a teacher.

The teacher runs inside the training step, under the same tf.distribute strategy: it is
rebuilt from the model config its training recorded (`train_summary.json`, or a serving
version's model card), created under `strategy.scope()` and not trainable, and its weights
are read from its SavedModel's variables (`warm_start.load_weights`). A pretrained
checkpoint directory (Hugging Face or KerasHub preset, `models/checkpoints/`) is a teacher
too: built from its config and weights as `train.init_from` builds a model. Nothing is
precomputed to disk. Student and teacher must share the tokenizer (same digest; a
checkpoint's is its tokenizer files converted as the tokenizer step converts them).

Resolution (`resolve`, no TensorFlow) follows `train.warm_start`: a path, or
`latest_pushed` (the newest serving version). When that version is the student this very
execution pushed (recognised by the `base_key` its training recorded), the teacher
resolves to the one it was distilled from, so a rerun after the push is cached.
"""

from __future__ import annotations

import hashlib
import os

from components.train import warm_start
from models.checkpoints import is_checkpoint
from pipeline.core.contracts import model as model_contract
from pipeline.core.contracts.model import CARD_FILE, SUMMARY_FILE, training_record
from pipeline.core.artifacts import Artifact
from pipeline.core.errors import ConfigError, UsageError

KEY = "train.distill.teacher"
# The artifact type of a teacher that is a pretrained checkpoint directory
# (`model_contract.resolve_checkpoint`).
CHECKPOINT = "Checkpoint"


def resolve(requested: str, serving_dir: str, base_key: str) -> Artifact:
    """The teacher input for `train.distill.teacher`.

    Args:
        requested: the config value (a model's or a pretrained checkpoint's path, or
            `latest_pushed`).
        serving_dir: `push.serving_dir`.
        base_key: train's cache key without the warm-start and teacher inputs.

    Returns:
        An artifact whose `uri` is the teacher and whose fingerprint enters the cache key
        (a checkpoint's: type `Checkpoint`, fingerprinted by its files as `train.init_from`).

    Raises:
        ConfigError: no such model, or nothing pushed yet.
    """
    if requested == model_contract.LATEST_PUSHED:
        return _latest_pushed(serving_dir, base_key)
    if "://" not in requested and is_checkpoint(os.path.abspath(os.path.expanduser(requested))):
        return model_contract.resolve_checkpoint(requested)  # fingerprinted by its files
    try:
        return model_contract.resolve(requested, serving_dir, base_key)
    except ConfigError as err:
        raise ConfigError(KEY, err.expected) from None


def _latest_pushed(serving_dir: str, base_key: str) -> Artifact:
    from pipeline.core.contracts import serving_dir as serving

    found = serving.versions(os.path.abspath(serving_dir))
    if not found:
        raise ConfigError(KEY, f"'latest_pushed' needs a pushed model in push.serving_dir "
                          f"({os.path.abspath(serving_dir)}), and there is none yet")
    latest = found[-1]
    recorded = (((latest.card.get("training") or {}).get("distill") or {}).get("teacher") or {})
    if recorded.get("base_key") == base_key and recorded.get("artifact"):
        return model_contract.recorded_reference(recorded["artifact"])
    digest = latest.digest()
    return Artifact(type="Model", uri=latest.path,
                    fingerprint=hashlib.sha256(f"{latest.path}|{digest}".encode()).hexdigest(),
                    properties={"requested": model_contract.LATEST_PUSHED, "base_key": base_key,
                                "version": latest.number, "model_sha256": digest})


def distillation_loss(student_logits, teacher_logits, nll, alpha: float, temperature: float):
    """The per-token loss of the module docstring.

    Args:
        student_logits, teacher_logits: float [..., V].
        nll: the student's token NLL [...] (nats).
        alpha: weight of the soft term.
        temperature: T.

    Returns:
        float32 [...].
    """
    import tensorflow as tf

    log_t = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    log_s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
    return alpha * temperature ** 2 * kl + (1.0 - alpha) * tf.cast(nll, tf.float32)


class Distiller:
    """The teacher and the loss, as the training step calls them (`loop.Trainer`).

    Args:
        teacher: the teacher Keras model (not trainable, built under the strategy's scope).
        alpha: weight of the soft term.
        temperature: T.
    """

    def __init__(self, teacher, alpha: float, temperature: float):
        self.teacher = teacher
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def token_loss(self, inputs: dict, student_logits, nll):
        """Per-token training loss of one (micro-)batch.

        Args:
            inputs: the model inputs the student saw (teacher sees the same).
            student_logits: the student's logits [B, L, V].
            nll: the student's token NLL [B, L].

        Returns:
            float32 [B, L].
        """
        import tensorflow as tf

        teacher_logits = tf.stop_gradient(self.teacher(inputs, training=False))
        return distillation_loss(student_logits, teacher_logits, nll, self.alpha,
                                 self.temperature)


def load_teacher(artifact: Artifact, tokenizer_sha256: str, vocabulary_size: int,
                 student_model_config, sequence_length: int, strategy, precision: str):
    """Build the teacher from its recorded config under `strategy` and read its weights.

    Args:
        artifact: the resolved teacher input.
        tokenizer_sha256: this run's tokenizer digest.
        vocabulary_size: the tokenizer's vocabulary size.
        student_model_config: the student's `ModelConfig` (objectives must agree).
        sequence_length: the examples' window (the teacher must take it).
        strategy: the training strategy.
        precision: `train.precision` (the teacher computes under the same policy).

    Returns:
        (teacher model, {"model": its config, "parameters", "variant", "loaded"}).

    Raises:
        ConfigError: another tokenizer, objective or too short a window.
        UsageError: no record of how it was built, or unreadable weights.
    """
    from components.train.precision import dtype_policy
    from models.factory import build_model
    from models.quantize import MODES, quantize_int8
    from pipeline.core.config import ModelConfig, TaskConfig
    from pipeline.core.configio import build, to_dict

    source = artifact.uri
    if artifact.type == CHECKPOINT:
        return _checkpoint_teacher(source, tokenizer_sha256, student_model_config,
                                   sequence_length, strategy, precision)
    training = training_record(source) or {}
    _check_tokenizer(source, training, tokenizer_sha256)
    recorded = training.get("hyperparameters") or {}
    if "model" not in recorded:
        raise UsageError(f"{KEY} {source}: its training record has no model config to "
                         "rebuild it from")
    model_config = build(ModelConfig, recorded["model"], "teacher model")
    task_config = build(TaskConfig, recorded.get("task") or {}, "teacher task")
    _check_fits(source, model_config, task_config, student_model_config, sequence_length)
    variant = _variant(source)
    mode = (recorded.get("train") or {}).get("quantize")
    with dtype_policy(precision), strategy.scope():
        teacher = build_model(model_config, task_config, vocabulary_size)
        if variant == "quantized":
            # Rebuilt in the mode it was exported in (older records name none: int8).
            quantize_int8(teacher, mode if mode in MODES else "int8")
        teacher.trainable = False
    try:
        loaded = warm_start.load_weights(teacher, source, tokenizer_sha256,
                                         quantized=variant == "quantized")
    except UsageError as err:
        raise UsageError(str(err).replace("train.warm_start", KEY)) from None
    return teacher, {"model": to_dict(model_config), "parameters": int(teacher.count_params()),
                     "variant": variant, "loaded": loaded}


def _checkpoint_teacher(source: str, tokenizer_sha256: str, student_model_config,
                        sequence_length: int, strategy, precision: str):
    """`load_teacher` for a pretrained checkpoint (`models/checkpoints/`): built from its
    config as `train.init_from` builds a model, its weights assigned, its tokenizer (as
    the tokenizer step would convert it) this run's."""
    from components.train.precision import dtype_policy
    from models.checkpoints import (load_weights, read_checkpoint, resolve_model_config,
                                    tokenizer_of)
    from models.factory import build_model
    from pipeline.core.config import ModelConfig, TaskConfig
    from pipeline.core.configio import to_dict
    from pipeline.core.contracts.tokenizer import TokenizerInfo, digest_of

    checkpoint = read_checkpoint(source)
    fields, model_file = tokenizer_of(checkpoint)
    digest = digest_of(TokenizerInfo(**fields), model_file)
    if digest != tokenizer_sha256:
        raise ConfigError(KEY, f"the checkpoint {source} has another tokenizer (sha256 "
                          f"{digest[:12]}, this run's is {tokenizer_sha256[:12]}); student and "
                          "teacher must share the tokenizer")
    model_config, task_config = resolve_model_config(ModelConfig(), checkpoint), TaskConfig()
    _check_fits(source, model_config, task_config, student_model_config, sequence_length)
    with dtype_policy(precision), strategy.scope():
        teacher = build_model(model_config, task_config, checkpoint.vocabulary_size,
                              backbone_arguments=checkpoint.backbone)
        teacher.trainable = False
    assigned = load_weights(teacher, checkpoint)
    return teacher, {"model": to_dict(model_config), "parameters": int(teacher.count_params()),
                     "variant": "float", "loaded": "checkpoint",
                     "checkpoint": {"layout": checkpoint.layout,
                                    "model_type": checkpoint.model_type,
                                    "weights_assigned": assigned}}


def _check_tokenizer(source: str, training: dict, expected: str) -> None:
    recorded = (training.get("tokenizer") or {}).get("sha256")
    if recorded is None:
        raise ConfigError(KEY, f"{source}: cannot tell which tokenizer it was trained with "
                          f"(no {SUMMARY_FILE} or {CARD_FILE} recording it)")
    if recorded != expected:
        raise ConfigError(KEY, f"{source} was trained with another tokenizer (sha256 "
                          f"{recorded[:12]}, this run's is {expected[:12]}); student and "
                          "teacher must share the tokenizer")


def _check_fits(source: str, teacher_config, teacher_task, student_config,
                sequence_length: int) -> None:
    if teacher_task.type != "lm":
        raise ConfigError(KEY, f"{source} is a {teacher_task.type} model; the teacher must be "
                          "a language model (task.type lm)")
    if teacher_config.training_objective != student_config.training_objective:
        raise ConfigError(KEY, f"{source} is a {teacher_config.training_objective} LM and the "
                          f"student a {student_config.training_objective} one; their "
                          "objectives must agree")
    if teacher_config.max_sequence_length < sequence_length:
        raise ConfigError(KEY, f"{source} takes at most {teacher_config.max_sequence_length} "
                          f"tokens, the examples have {sequence_length}")


def _variant(source: str) -> str:
    """`quantized` for an int8 export (a serving version pushed as such, or the directory
    itself), else `float`."""
    from pipeline.core.contracts import serving_dir as serving
    from pipeline.core.contracts.model import INT8_DIR

    if os.path.isdir(source) and serving.read_card(source).get("variant") == "quantized":
        return "quantized"
    return "quantized" if os.path.basename(os.path.normpath(source)) == INT8_DIR else "float"


def record(artifact: Artifact, distill_config, teacher_info: dict,
           teacher_eval_loss: float | None) -> dict:
    """What `train_summary.json` says about distillation (the resolver reads `teacher` back).

    Args:
        artifact: the resolved teacher input.
        distill_config: `train.distill`.
        teacher_info: from `load_teacher`.
        teacher_eval_loss: the teacher's eval loss on the run's eval batches.
    """
    return {"alpha": distill_config.alpha, "temperature": distill_config.temperature,
            "teacher": {**model_contract.record(artifact), **teacher_info,
                        "eval_loss": teacher_eval_loss}}
