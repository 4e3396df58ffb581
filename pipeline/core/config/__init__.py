"""The config tree: one frozen, keyword-only dataclass per section.

`pipeline.yaml` is one instance of `LmpipeConfig`. Each component reads only the sections
it declares (see `components/*.py` `SPEC.config`), and only those enter its cache key.
Checks within a section live in its `__post_init__`; checks across sections live in
`LmpipeConfig.__post_init__`. Each section documents its keys in an `Attributes:` block,
from which `pipeline.config_doc` generates the reference in README.md.
"""

from __future__ import annotations

from dataclasses import field

from pipeline.core.config.checks import (config_dataclass, require, require_plain_path,
                                         require_positive)
from pipeline.core.config.cloud import DataflowConfig, ScheduleConfig, VertexConfig, VertexMachineConfig
from pipeline.core.config.data import SPAN, DataConfig, SpansConfig, TokenizerConfig, TransformConfig
from pipeline.core.config.model import FAMILY_OBJECTIVES, ModelConfig, TaskConfig
from pipeline.core.config.release import EvaluationConfig, PushConfig
from pipeline.core.config.train import DistillConfig, PruneConfig, TrainConfig
from pipeline.core.config.tuning import (FloatRange, HyperbandConfig, SearchSpaceConfig, TuningConfig,
                                    check_tuning)
from pipeline.core.config.validation import ValidationConfig


@config_dataclass
class PipelineConfig:
    """The pipeline as a whole.

    Attributes:
        name: the pipeline's name (the Vertex pipeline and the run records carry it).
        root: where artifacts, `metadata.sqlite`, logs and `latest_run.json` live.
        beam_args: options passed verbatim to every Beam step (ingest, transform,
            evaluate), such as the DirectRunner's running mode and worker count, or
            --runner=DataflowRunner with its project, region and locations.
    """

    name: str = "lmpipe"
    root: str = "runs"
    beam_args: tuple[str, ...] = ("--direct_running_mode=in_memory",)

    def __post_init__(self):
        require_plain_path(self, "root")


def check_task(config) -> None:
    """Cross-section checks of `task`: the data fields it reads, its step and token budgets."""
    task, data = config.task, config.data
    require(task.type != "classification" or data.label_field is not None, "data.label_field",
            "must name the JSONL label field for task.type 'classification'")
    require(task.type != "text_to_text" or data.target_field is not None, "data.target_field",
            "must name the JSONL target field for task.type 'text_to_text'")
    require(task.type == "lm" or not any(SPAN in p for p in data.inputs), "data.inputs",
            f"data spans ({SPAN}) are read for language models (task.type lm) only, got "
            f"task.type {task.type!r}")
    require(task.type == "lm" or not config.evaluation.golden_inputs,
            "evaluation.golden_inputs", f"a golden eval set is measured for language models "
            f"(task.type lm) only, got task.type {task.type!r}")
    require(task.type == "lm" or not config.tuning.enabled, "tuning.enabled",
            f"tunes language models only; set it to false for task.type {task.type!r}")
    steps = config.train.steps
    require(steps is None or task.freeze_backbone_steps < steps, "task.freeze_backbone_steps",
            f"must be below train.steps ({steps}), got {task.freeze_backbone_steps}")
    length = config.transform.sequence_length
    require(task.type != "text_to_text" or task.max_target_tokens + 4 <= length,
            "task.max_target_tokens",
            f"must leave room for the input in transform.sequence_length ({length}): at most "
            f"{length - 4}, got {task.max_target_tokens}")


@config_dataclass
class LmpipeConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data: DataConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    push: PushConfig = field(default_factory=PushConfig)
    vertex: VertexConfig = field(default_factory=VertexConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self):
        require(self.transform.sequence_length <= self.model.max_sequence_length,
                "transform.sequence_length",
                f"must be <= model.max_sequence_length ({self.model.max_sequence_length}), "
                f"got {self.transform.sequence_length}")
        # bert pre-trains with task.type lm (its masked LM) and can classify, but it
        # cannot continue a text causally.
        require(self.model.family != "bert" or self.task.type != "text_to_text", "task.type",
                "must be 'lm' or 'classification' for model.family 'bert', got 'text_to_text'")
        check_task(self)
        check_tuning(self)
        require(self.train.distill.teacher is None or self.task.type == "lm",
                "train.distill.teacher", f"distillation is implemented for task.type 'lm', "
                f"got {self.task.type!r}")
        require(self.push.variant != "quantized" or self.train.quantize != "none",
                "push.variant", "'quantized' needs train.quantize int8 or int8_weights (the "
                "quantized export)")


__all__ = [
    "DataConfig", "DataflowConfig", "DistillConfig", "EvaluationConfig", "FAMILY_OBJECTIVES",
    "FloatRange", "HyperbandConfig", "LmpipeConfig", "ModelConfig", "PipelineConfig",
    "PruneConfig", "PushConfig", "ScheduleConfig", "SearchSpaceConfig", "SpansConfig", "TaskConfig",
    "TokenizerConfig", "TrainConfig", "TransformConfig", "TuningConfig", "ValidationConfig",
    "VertexConfig", "VertexMachineConfig", "config_dataclass", "require", "require_positive",
]
