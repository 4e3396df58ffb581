"""`train` and its nested `distill` and `prune` sections."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from pipeline.core.config.checks import (config_dataclass, require, require_plain_path,
                                         require_positive)


@config_dataclass
class DistillConfig:
    """Knowledge distillation from a teacher (`components/train/distill.py`).

    Attributes:
        teacher: the teacher: a model artifact, SavedModel directory or serving version,
            `latest_pushed` (the newest version in `push.serving_dir`), or a pretrained
            checkpoint directory (Hugging Face or KerasHub preset, as `init_from` takes);
            None: no distillation. It must have been trained with this run's tokenizer
            (a checkpoint: its tokenizer files are this run's).
        alpha: weight of the distillation term: per target token the loss is alpha times
            T^2 times the KL divergence of the student's next-token distribution from the
            teacher's (both at temperature T), plus (1 - alpha) times the cross-entropy.
        temperature: T, dividing both models' logits inside the KL term.
    """

    teacher: str | None = None
    alpha: float = 0.5
    temperature: float = 1.0

    def __post_init__(self):
        require(self.teacher is None or bool(self.teacher.strip()), "teacher",
                "must be a path or 'latest_pushed', got ''")
        require_plain_path(self, "teacher")
        require(0.0 <= self.alpha <= 1.0, "alpha", f"must be in [0, 1], got {self.alpha}")
        require_positive(self, "temperature")


@config_dataclass
class PruneConfig:
    """Magnitude pruning during training (`components/train/pruning.py`).

    The kernels of the transformer blocks' dense projections (attention query, key, value,
    output; the MLP) are pruned, each to the scheduled fraction of its smallest-magnitude
    weights; embeddings, norms, biases and the output head are not.

    Attributes:
        target_sparsity: the final fraction of zeros in each pruned kernel (None: off).
        initial_sparsity: the fraction at `begin_step`.
        begin_step: the first step that prunes.
        end_step: the step that reaches `target_sparsity` (None: the run's last step);
            from then on the masks are fixed.
        frequency: steps between mask updates (TF-MOT's polynomial schedule:
            `s = target + (initial - target) * (1 - (step - begin) / (end - begin))^power`).
        power: the schedule's exponent.
    """

    target_sparsity: float | None = None
    initial_sparsity: float = 0.0
    begin_step: int = 0
    end_step: int | None = None
    frequency: int = 100
    power: float = 3.0

    def __post_init__(self):
        require(self.target_sparsity is None or 0.0 < self.target_sparsity < 1.0,
                "target_sparsity", f"must be in (0, 1), got {self.target_sparsity}")
        require(0.0 <= self.initial_sparsity <= (self.target_sparsity or 0.0),
                "initial_sparsity", f"must be in [0, prune.target_sparsity "
                f"({self.target_sparsity})], got {self.initial_sparsity}")
        require(self.begin_step >= 0, "begin_step", f"must be >= 0, got {self.begin_step}")
        require(self.end_step is None or self.end_step > self.begin_step, "end_step",
                f"must be > prune.begin_step ({self.begin_step}), got {self.end_step}")
        require_positive(self, "frequency", "power")


@config_dataclass
class TrainConfig:
    """How the train component trains (`components/train/`).

    Attributes:
        steps: optimizer steps to take (None: `max_tokens` alone is the budget).
        max_tokens: token budget, counted as token positions (`batch_size` times the
            sequence length per step); with `steps` also set, whichever ends first.
        batch_size: the global batch per optimizer step, whatever the replica count.
        grad_accum_steps: each replica's share of the batch runs as this many micro-batches
            whose gradients are summed before one update (less memory, the same update).
        learning_rate: the peak learning rate.
        schedule: after a linear warm-up over `warmup_steps`: `constant`, `cosine`,
            `linear` (both reach `learning_rate * min_learning_rate_ratio` at the last
            step) or `inverse_sqrt` (`learning_rate * sqrt(warmup / step)`, floored there).
        warmup_steps: steps of linear warm-up; the first step already gets a non-zero rate.
        min_learning_rate_ratio: the decay's floor as a fraction of `learning_rate`.
        optimizer: `sgd`, `momentum` (SGD with momentum), `rmsprop`, `adam`, `adamw`,
            `lion` or `adafactor` (Keras built-ins).
        weight_decay: decoupled weight decay of weight matrices (norms, biases and
            embeddings are left alone); None: 0.01 for adamw and lion, 0 otherwise.
        momentum: the momentum of `momentum`.
        nesterov: Nesterov momentum (`momentum` only).
        beta_1: first-moment decay of adam, adamw and lion.
        beta_2: second-moment decay of adam and adamw, the update interpolation of lion;
            None: 0.95 (adam, adamw) or 0.99 (lion).
        epsilon: the denominator's epsilon of adam, adamw and rmsprop.
        clip_norm: clip the all-reduced gradient to this global norm (None: no clipping).
        precision: `float32`, `mixed_bfloat16`, or `mixed_float16` (with dynamic loss
            scaling); variables stay float32 and the exported model is float32.
        jit_compile: compile each micro-batch's forward and backward pass with XLA:
            `True` (YAML `true`), `False`, or `auto`: XLA when the model has at least 1e6
            weight FLOPs per token (measured 1.2x to 1.8x faster steps on CPUs, for seconds
            more compiling; `train_summary.json` records the decision under `xla`).
        steps_per_execution: optimizer steps per compiled call (fewer host round trips); a
            call also ends at every `log_every`, `eval_every` and `checkpoint_every` step,
            so raise `log_every` with it.
        strategy: `auto` (TPU if a resolver finds one, mirrored over more than one GPU,
            else default), `default`, `one_device`, `mirrored`, `multi_worker` (TF_CONFIG,
            as Vertex AI sets it) or `tpu`.
        shuffle_buffer: examples in the training shuffle buffer.
        seed: seeds initialization, shuffling and input corruption.
        log_every: steps between progress lines, TensorBoard and CSV rows.
        eval_every: steps between evaluations on the eval split (None: only at the end).
        eval_batches: eval batches per evaluation (the first ones, in file order).
        early_stopping_patience: stop after this many evaluations in a row without an eval
            loss below the best by more than `early_stopping_min_delta` (needs eval_every).
        early_stopping_min_delta: the improvement that counts, in nats.
        checkpoint_every: steps between checkpoints, from which a restarted run resumes
            (None: no checkpoints).
        keep_checkpoints: how many of the newest checkpoints to keep.
        warm_start: initial weights: a model artifact, SavedModel directory or `.keras`
            file, or `latest_pushed` (the newest version in `push.serving_dir`; none yet
            means a fresh start). The tokenizer and the shapes must match.
        init_from: a pretrained checkpoint directory to start from (local; on Vertex AI
            the /gcs/ mount): a Hugging Face checkpoint (config.json, model.safetensors or
            shards with their index, tokenizer files) or a KerasHub `save_to_preset`
            directory, of GPT-2, Llama or BERT (`models/checkpoints/`). The
            model's shape comes from its config (a conflicting `model.*` value is an error)
            and its tokenizer replaces the trained one. None: fresh weights (or
            `warm_start`).
        distill: knowledge distillation from a teacher (`DistillConfig`).
        prune: magnitude pruning to a target sparsity (`PruneConfig`).
        quantize: also export `saved_model_int8/`, the serving model with int8 weights
            (`models/quantize.py`): `int8` quantizes each dense layer's input per token at
            run time too (dynamic range, int8 matmuls), `int8_weights` only stores the
            weights in int8 (float matmuls); `none`: the float export only.
    """

    steps: int | None = 1000
    max_tokens: int | None = None
    batch_size: int = 32
    grad_accum_steps: int = 1
    learning_rate: float = 1e-3
    schedule: Literal["constant", "cosine", "linear", "inverse_sqrt"] = "cosine"
    warmup_steps: int = 0
    min_learning_rate_ratio: float = 0.1
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam", "adamw", "lion",
                       "adafactor"] = "adamw"
    weight_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float | None = None
    epsilon: float = 1e-8
    clip_norm: float | None = 1.0
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    jit_compile: Literal["auto", True, False] = "auto"
    steps_per_execution: int = 1
    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker",
                      "tpu"] = "auto"
    shuffle_buffer: int = 10_000
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    eval_batches: int = 20
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    checkpoint_every: int | None = 100
    keep_checkpoints: int = 3
    warm_start: str | None = None
    init_from: str | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quantize: Literal["none", "int8", "int8_weights"] = "none"

    def __post_init__(self):
        require_plain_path(self, "warm_start", "init_from")
        # YAML's 1 and 0 compare equal to true and false: only the booleans and auto.
        require(isinstance(self.jit_compile, bool) or self.jit_compile == "auto", "jit_compile",
                f"expected true, false or auto, got {self.jit_compile!r}")
        require(self.init_from is None or bool(self.init_from.strip()), "init_from",
                "must be a checkpoint directory, got ''")
        require(self.init_from is None or self.warm_start is None, "init_from",
                "and train.warm_start are both set: start from one model (a checkpoint, or a "
                "model lmpipe trained)")
        require_positive(self, "steps", "max_tokens", "batch_size", "grad_accum_steps",
                         "learning_rate", "epsilon", "clip_norm", "steps_per_execution",
                         "shuffle_buffer", "log_every", "eval_every", "eval_batches",
                         "early_stopping_patience", "checkpoint_every", "keep_checkpoints")
        require(self.steps is not None or self.max_tokens is not None, "steps",
                "set train.steps or train.max_tokens (the training budget), got neither")
        require(self.batch_size % self.grad_accum_steps == 0, "grad_accum_steps",
                f"must divide train.batch_size ({self.batch_size}), got {self.grad_accum_steps}")
        require(self.warmup_steps >= 0 and (self.steps is None or self.warmup_steps < self.steps),
                "warmup_steps", f"must be in [0, train.steps), got {self.warmup_steps}")
        require(0.0 <= self.min_learning_rate_ratio <= 1.0, "min_learning_rate_ratio",
                f"must be in [0, 1], got {self.min_learning_rate_ratio}")
        require(self.weight_decay is None or self.weight_decay >= 0, "weight_decay",
                f"must be >= 0, got {self.weight_decay}")
        for name in ("momentum", "beta_1", "beta_2"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value < 1.0, name, f"must be in [0, 1), got {value}")
        require(not self.nesterov or self.optimizer == "momentum", "nesterov",
                f"is an option of train.optimizer 'momentum' (got {self.optimizer!r})")
        require(self.early_stopping_patience is None or self.eval_every is not None,
                "early_stopping_patience", "needs train.eval_every (evaluations to compare)")
        require(self.early_stopping_min_delta >= 0, "early_stopping_min_delta",
                f"must be >= 0, got {self.early_stopping_min_delta}")
        require(not (self.strategy == "tpu" and self.precision == "mixed_float16"), "precision",
                "must be float32 or mixed_bfloat16 with train.strategy 'tpu' (TPUs compute "
                "in bfloat16), got 'mixed_float16'")
        require(self.warm_start is None or bool(self.warm_start.strip()), "warm_start",
                "must be a path or 'latest_pushed', got ''")
        end = self.prune.end_step
        require(end is None or self.steps is None or end <= self.steps, "prune.end_step",
                f"must be <= train.steps ({self.steps}), got {end}")
        # With no end step the schedule ends at the last step: a later begin would only
        # be refused by train, after the data steps have run.
        require(self.prune.target_sparsity is None or end is not None or self.steps is None
                or self.prune.begin_step < self.steps, "prune.begin_step",
                f"must be below train.steps ({self.steps}), where the schedule ends without "
                f"prune.end_step, got {self.prune.begin_step}")
