"""The training session's compression hooks: teacher, pruning masks, the int8 export.

`session.py` calls these so that it only wires them in: `build_hooks` before the loop
(after the student and its optimizer, so a distilled run initializes the student exactly
as a run without a teacher does), `summary_fields` for `train_summary.json`, and
`export_variants` beside the float export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from components.train import data, distill, pruning
from components.train.loop import Trainer
from models import quantize
from models.export import save_export
from pipeline.core.contracts.model import FLOAT_DIR, INT8_DIR


@dataclass
class Hooks:
    """What compression adds to a session.

    Attributes:
        distiller: a `distill.Distiller`, or None.
        teacher: `distill.load_teacher`'s description of the teacher, or None.
        pruner: a `pruning.Pruner`, or None.
    """

    distiller: distill.Distiller | None = None
    teacher: dict | None = None
    pruner: pruning.Pruner | None = None

    def checkpoint_objects(self) -> dict:
        """Extra objects a checkpoint must hold for an exact resume (the pruning masks)."""
        return {"pruning_masks": self.pruner.state} if self.pruner is not None else {}


def build_hooks(job, strategy, model, tokenizer_info) -> Hooks:
    """The teacher and the pruner that `train.distill` and `train.prune` ask for.

    Args:
        job: the session's `Job` (config sections, budget, teacher input).
        strategy: the training strategy.
        model: the student, built under `strategy.scope()`.
        tokenizer_info: the run's `TokenizerInfo`.

    Returns:
        The hooks (all None when neither is configured).
    """
    config = job.train_config
    hooks = Hooks()
    if job.teacher is not None:
        teacher, hooks.teacher = distill.load_teacher(
            job.teacher, job.tokenizer_sha256, tokenizer_info.vocab_size, job.model_config,
            job.spec.sequence_length, strategy, config.precision)
        hooks.distiller = distill.Distiller(teacher, config.distill.alpha,
                                            config.distill.temperature)
    schedule = pruning.make_schedule(config.prune, job.budget["total_steps"])
    if schedule is not None:
        hooks.pruner = pruning.Pruner(model, schedule, strategy)
    return hooks


def describe(job, hooks: Hooks) -> list[str]:
    """Progress lines saying what the run distills from and how it prunes."""
    lines = []
    if hooks.distiller is not None:
        lines.append(f"distilling from {job.teacher.uri} ({hooks.teacher['parameters']:,} "
                     f"parameters, {hooks.teacher['variant']}), alpha "
                     f"{hooks.distiller.alpha}, temperature {hooks.distiller.temperature}")
    if hooks.pruner is not None:
        s = hooks.pruner.schedule
        lines.append(f"pruning {len(hooks.pruner.targets)} kernels to sparsity {s.target} "
                     f"(steps {s.begin}-{s.end}, every {s.frequency})")
    return lines


def summary_fields(job, hooks: Hooks, trainer: Trainer) -> dict:
    """`distill` and `pruning` entries of `train_summary.json` (None when not configured).

    The teacher's eval loss is measured on the same eval batches as the student's.
    """
    fields = {"distill": None, "pruning": None}
    if hooks.distiller is not None:
        fields["distill"] = distill.record(job.teacher, job.train_config.distill, hooks.teacher,
                                           _teacher_eval_loss(job, hooks, trainer))
    if hooks.pruner is not None:
        fields["pruning"] = hooks.pruner.record(trainer.model)
    return fields


def _teacher_eval_loss(job, hooks: Hooks, trainer: Trainer) -> float | None:
    files = data.split_files(job.paths.examples, "eval")
    if not files:
        return None
    config = job.train_config
    evaluator = Trainer(hooks.distiller.teacher, None, trainer.strategy, trainer.objective,
                        trainer.seed, None)
    return evaluator.evaluate(data.eval_dataset(files, job.spec, config.batch_size,
                                                config.eval_batches))


def export_variants(job, plain, tokenizer) -> dict:
    """Describe the float export and, with `train.quantize` int8 or int8_weights, write
    and describe the int8 one. Call after the float export: `plain` is quantized in place.

    Args:
        job: the session's `Job`.
        plain: the float32 export copy of the trained model.
        tokenizer: the run's tokenizer.

    Returns:
        {"float": {...}, "quantized": {...} (only when exported)}: directory, mode,
        parameters, int8 weights and sizes (`quantize.describe_export`).
    """
    output = job.paths.output
    mode = job.train_config.quantize
    variants = {"float": {"directory": FLOAT_DIR, "mode": "float",
                          "parameters": int(plain.count_params()), "int8_weights": 0,
                          **quantize.describe_export(os.path.join(output, FLOAT_DIR))}}
    if mode != "none":
        directory = os.path.join(output, INT8_DIR)
        quantize.quantize_int8(plain, mode)
        save_export(plain, tokenizer, job.spec.sequence_length, directory, job.spec.task)
        variants["quantized"] = {"directory": INT8_DIR, "mode": mode,
                                 "parameters": variants["float"]["parameters"],
                                 "int8_weights": quantize.int8_weights(plain),
                                 **quantize.describe_export(directory)}
    return variants
