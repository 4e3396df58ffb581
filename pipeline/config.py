"""The config tree: one frozen, keyword-only dataclass per section.

`pipeline.yaml` is one instance of `LmpipeConfig`. Each component reads only the sections
it declares (see `components/*.py` `SPEC.config`), and only those enter its cache key.
Checks within a section live in its `__post_init__`; checks across sections live in
`LmpipeConfig.__post_init__`. Field docs are in README.md ("Configuration").
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field, fields
from typing import Literal

from pipeline.errors import ConfigError

config_dataclass = dataclass(frozen=True, kw_only=True)


def require(condition: bool, key: str, expected: str) -> None:
    """Raise a `ConfigError` for `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(key, expected)


def require_positive(section: object, *names: str) -> None:
    """Each named int/float field of `section` must be > 0."""
    for name in names:
        value = getattr(section, name)
        require(value is None or value > 0, name, f"must be > 0, got {value}")


@config_dataclass
class PipelineConfig:
    name: str = "lmpipe"
    root: str = "runs"
    beam_args: tuple[str, ...] = ("--direct_running_mode=in_memory",)


@config_dataclass
class DataConfig:
    inputs: tuple[str, ...]
    text_field: str = "text"
    domain_field: str | None = None
    label_field: str | None = None
    target_field: str | None = None
    txt_mode: Literal["line", "file"] = "line"
    invalid_utf8: Literal["drop", "replace"] = "drop"
    control_chars: Literal["remove", "keep"] = "remove"
    normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    whitespace: Literal["normalize", "collapse", "keep"] = "normalize"
    min_chars: int = 1
    max_chars: int = 1_000_000
    dedup: bool = True
    eval_fraction: float = 0.05
    split_salt: str = "lmpipe"

    def __post_init__(self):
        require(len(self.inputs) > 0, "inputs", "needs at least one path or glob")
        require(all(p.strip() for p in self.inputs), "inputs", "paths and globs must not be empty")
        require(self.text_field != self.domain_field, "domain_field",
                f"must differ from data.text_field ({self.text_field!r})")
        for name in ("label_field", "target_field"):
            require(getattr(self, name) != self.text_field, name,
                    f"must differ from data.text_field ({self.text_field!r})")
        require(0.0 < self.eval_fraction < 1.0, "eval_fraction",
                f"must be between 0 and 1 (exclusive), got {self.eval_fraction}")
        require(self.min_chars >= 1, "min_chars", f"must be >= 1, got {self.min_chars}")
        require(self.max_chars >= max(self.min_chars, 1000), "max_chars",
                f"must be >= 1000 and >= data.min_chars ({self.min_chars}), got {self.max_chars}")


@config_dataclass
class TokenizerConfig:
    type: Literal["bpe", "unigram", "wordpiece"] = "bpe"
    vocab_size: int = 4000
    sample_bytes: int = 50_000_000
    character_coverage: float = 0.9995
    lower_case: bool = False
    seed: int = 0

    def __post_init__(self):
        require(self.vocab_size >= 300, "vocab_size",
                f"must be >= 300 (256 byte-fallback pieces plus specials), got {self.vocab_size}")
        require_positive(self, "sample_bytes")
        require(0.98 <= self.character_coverage <= 1.0, "character_coverage",
                f"must be in [0.98, 1.0] (SentencePiece's range), got {self.character_coverage}")
        require(not self.lower_case or self.type == "wordpiece", "lower_case",
                f"is a WordPiece option (tokenizer.type is {self.type!r})")


@config_dataclass
class TransformConfig:
    sequence_length: int = 128
    compression: Literal["none", "gzip"] = "none"
    mix_train_tails: bool = True
    length_buckets: tuple[int, ...] = (128, 512, 2048)
    tokenizer_processes: int | None = None

    def __post_init__(self):
        require(self.sequence_length >= 8, "sequence_length",
                f"must be >= 8, got {self.sequence_length}")
        require_positive(self, "tokenizer_processes")
        edges = list(self.length_buckets)
        require(all(e > 0 for e in edges) and edges == sorted(set(edges)), "length_buckets",
                f"must be increasing token counts > 0, got {edges}")


@config_dataclass
class ModelConfig:
    """The network (`models/factory.py` maps these onto the backbone's and task's arguments).

    Attributes:
        family: `gpt` (learned positions, pre-LayerNorm, GELU MLP), `llama` (rotary
            positions, RMSNorm, SwiGLU MLP, grouped-query attention, no biases) or `bert`
            (bidirectional encoder with learned positions and a masked-LM head).
        objective: what `task.type: lm` trains: `causal` (next token; gpt, llama) or
            `masked` (BERT's recipe: 15% of the real tokens chosen, of those 80% -> mask,
            10% -> a random token, 10% kept; the loss on the chosen ones; bert). `auto`
            is the family's own; any other pairing is an error.
        num_layers, hidden_dim, num_heads: depth, width and attention heads.
        num_kv_heads: llama's key/value heads (grouped-query attention); must divide
            `num_heads`; None means `num_heads` (plain multi-head attention).
        intermediate_dim: MLP width; None is the family's default (4 * hidden_dim for gpt
            and bert; for llama's SwiGLU 8/3 * hidden_dim rounded up to a multiple of 8,
            about the parameters of a 4x GELU MLP).
        max_sequence_length: the longest window (gpt and bert learn one embedding per
            position; llama's rotary positions have no table but keep the bound).
        rope_max_wavelength: the base of llama's rotary frequencies.
        dropout: dropout rate.
        document_masking: a token attends only to its own document of a packed window.
        tie_embeddings: the output projection is the token embedding; None is the
            family's default (tied for bert, as in BERT; untied for gpt and llama).
    """

    family: Literal["gpt", "llama", "bert"] = "gpt"
    objective: Literal["auto", "causal", "masked"] = "auto"
    num_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 4
    num_kv_heads: int | None = None
    intermediate_dim: int | None = None
    max_sequence_length: int = 512
    rope_max_wavelength: float = 10_000.0
    dropout: float = 0.0
    document_masking: bool = True
    tie_embeddings: bool | None = None

    def __post_init__(self):
        require_positive(self, "num_layers", "hidden_dim", "num_heads", "num_kv_heads",
                         "intermediate_dim", "max_sequence_length", "rope_max_wavelength")
        require(self.hidden_dim % self.num_heads == 0, "hidden_dim",
                f"must be a multiple of model.num_heads ({self.num_heads}), got {self.hidden_dim}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.num_kv_heads is None or self.family == "llama", "num_kv_heads",
                f"is a llama option (model.family is {self.family!r})")
        require(self.num_kv_heads is None or self.num_heads % self.num_kv_heads == 0,
                "num_kv_heads", f"must divide model.num_heads ({self.num_heads}), "
                f"got {self.num_kv_heads}")
        head_dim = self.hidden_dim // self.num_heads
        require(self.family != "llama" or head_dim % 2 == 0, "hidden_dim",
                f"must give llama an even head dim for rotary positions "
                f"(hidden_dim / num_heads = {head_dim})")
        own = FAMILY_OBJECTIVES[self.family]
        require(self.objective in ("auto", own), "objective",
                f"must be {own!r} or 'auto' for model.family {self.family!r} "
                f"(got {self.objective!r})")

    @property
    def training_objective(self) -> str:
        """`causal` or `masked`: the objective `auto` stands for."""
        return FAMILY_OBJECTIVES[self.family] if self.objective == "auto" else self.objective

    @property
    def tied_embeddings(self) -> bool:
        """Whether the output projection is the token embedding (the family's default if unset)."""
        return self.family == "bert" if self.tie_embeddings is None else self.tie_embeddings


# Each family's objective: decoders predict the next token, the encoder masked tokens.
FAMILY_OBJECTIVES = {"gpt": "causal", "llama": "causal", "bert": "masked"}


@config_dataclass
class TaskConfig:
    """What the model is trained to do (`docs/tasks.md`).

    Attributes:
        type: `lm` (the family's language-model objective: pre-training),
            `classification` (a label per document, from `data.label_field`, predicted by
            a head on the backbone) or `text_to_text` (the causal LM fine-tuned on `input +
            separator + target`, input from `data.text_field`, target from
            `data.target_field`, the loss on the target's tokens only).
        pooling: classification: what the head reads: `last` (the document's last token,
            eos, which a causal backbone lets see the whole document) or `mean` (the mean
            over the document's tokens).
        freeze_backbone_steps: classification: train only the head for this many steps
            (the backbone is neither updated nor weight-decayed), then everything.
        tokenizer: classification, text_to_text: a tokenizer artifact, or a model (model
            artifact, SavedModel, serving version, `.keras` file) whose tokenizer the run
            uses instead of training one; None: `train.warm_start`'s model's when set,
            else a new tokenizer trained on the task's documents.
        separator: text_to_text: the text between input and target (tokenized on its own).
        max_target_tokens: text_to_text: targets are cut to this many tokens; also the
            longest completion evaluate generates.
        min_accuracy, min_macro_f1, min_macro_auc: classification's release gate: lower
            bounds on the eval split's accuracy, macro F1 and macro one-vs-rest AUC
            (None: no bound).
        min_bleu, min_rouge_l, min_exact_match: text_to_text's release gate: lower bounds
            on corpus BLEU (0-100), mean ROUGE-L F1 and the exact-match rate of greedy
            completions (None: no bound).
    """

    type: Literal["lm", "classification", "text_to_text"] = "lm"
    pooling: Literal["last", "mean"] = "last"
    freeze_backbone_steps: int = 0
    tokenizer: str | None = None
    separator: str = " => "
    max_target_tokens: int = 32
    min_accuracy: float | None = None
    min_macro_f1: float | None = None
    min_macro_auc: float | None = None
    min_bleu: float | None = None
    min_rouge_l: float | None = None
    min_exact_match: float | None = None

    def __post_init__(self):
        require(self.freeze_backbone_steps >= 0, "freeze_backbone_steps",
                f"must be >= 0, got {self.freeze_backbone_steps}")
        require_positive(self, "max_target_tokens")
        require(self.tokenizer is None or bool(self.tokenizer.strip()), "tokenizer",
                "must be a path, got ''")
        require(bool(self.separator), "separator", "must not be empty")
        options = {"classification": ("pooling", "freeze_backbone_steps", "min_accuracy",
                                      "min_macro_f1", "min_macro_auc"),
                   "text_to_text": ("separator", "max_target_tokens", "min_bleu",
                                    "min_rouge_l", "min_exact_match")}
        for kind, names in options.items():
            for name in names:
                default = type(self).__dataclass_fields__[name].default
                require(self.type == kind or getattr(self, name) == default, name,
                        f"is a {kind} option (task.type is {self.type!r})")
        require(self.type != "lm" or self.tokenizer is None, "tokenizer",
                "is a classification or text_to_text option (task.type is 'lm')")
        for name in ("min_accuracy", "min_macro_f1", "min_macro_auc", "min_rouge_l",
                     "min_exact_match"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value <= 1.0, name, f"must be in [0, 1], got {value}")
        require(self.min_bleu is None or 0.0 <= self.min_bleu <= 100.0, "min_bleu",
                f"must be in [0, 100], got {self.min_bleu}")


@config_dataclass
class DistillConfig:
    """Knowledge distillation from a teacher (`components/training/distill.py`).

    Attributes:
        teacher: the teacher: a model artifact, SavedModel directory or serving version,
            or `latest_pushed` (the newest version in `push.serving_dir`); None: no
            distillation. It must have been trained with this run's tokenizer.
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
        require(0.0 <= self.alpha <= 1.0, "alpha", f"must be in [0, 1], got {self.alpha}")
        require_positive(self, "temperature")


@config_dataclass
class PruneConfig:
    """Magnitude pruning during training (`components/training/pruning.py`).

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
    """How the train component trains (`components/train.py`, `components/training/`).

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
        jit_compile: compile each micro-batch's forward and backward pass with XLA.
        steps_per_execution: optimizer steps per compiled call (fewer host round trips).
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
    jit_compile: bool = False
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
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quantize: Literal["none", "int8", "int8_weights"] = "none"

    def __post_init__(self):
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


@config_dataclass
class FloatRange:
    """A continuous hyperparameter: sampled between `min` and `max` (inclusive).

    Attributes:
        min, max: the bounds.
        sampling: `log` (log-uniform: every decade equally likely; needs min > 0) or `linear`.
    """

    min: float
    max: float
    sampling: Literal["log", "linear"] = "log"

    def __post_init__(self):
        require(self.sampling != "log" or self.min > 0, "min",
                f"must be > 0 for log sampling, got {self.min}")
        require(self.max > self.min, "max", f"must be above min ({self.min}), got {self.max}")


def _default_learning_rates() -> FloatRange:
    return FloatRange(min=1e-4, max=1e-2)


@config_dataclass
class SearchSpaceConfig:
    """What `tune` searches over (`tuning.space`); a key left out (or null) is not tuned and
    keeps its `train.*` / `model.*` value. Choices are lists; ranges are {min, max, sampling}.

    Attributes:
        learning_rate: `train.learning_rate`, a range (log-uniform by default).
        batch_size: `train.batch_size` choices (trials still see equal token budgets).
        warmup_steps: `train.warmup_steps` choices.
        weight_decay: `train.weight_decay`, a range.
        optimizer: `train.optimizer` choices.
        num_layers: `model.num_layers` choices.
        hidden_dim: `model.hidden_dim` choices.
    """

    learning_rate: FloatRange | None = field(default_factory=_default_learning_rates)
    batch_size: tuple[int, ...] | None = (16, 32, 64)
    warmup_steps: tuple[int, ...] | None = None
    weight_decay: FloatRange | None = None
    optimizer: tuple[str, ...] | None = None
    num_layers: tuple[int, ...] | None = None
    hidden_dim: tuple[int, ...] | None = None

    def __post_init__(self):
        optimizers = typing.get_args(typing.get_type_hints(TrainConfig)["optimizer"])
        valid = {"batch_size": (lambda v: v > 0, "must be > 0"),
                 "warmup_steps": (lambda v: v >= 0, "must be >= 0"),
                 "optimizer": (lambda v: v in optimizers, "must be among " + ", ".join(optimizers)),
                 "num_layers": (lambda v: v > 0, "must be > 0"),
                 "hidden_dim": (lambda v: v > 0, "must be > 0")}
        for name, (check, expected) in valid.items():
            choices = getattr(self, name)
            if choices is None:
                continue
            require(len(choices) > 0, name, "needs at least one choice (or null: not tuned)")
            require(len(set(choices)) == len(choices), name,
                    f"must not repeat a choice, got {list(choices)}")
            require(all(map(check, choices)), name, f"choices {expected}, got {list(choices)}")
        lr, decay = self.learning_rate, self.weight_decay
        require(lr is None or lr.min > 0, "learning_rate.min", f"must be > 0, got {lr and lr.min}")
        require(decay is None or decay.min >= 0, "weight_decay.min",
                f"must be >= 0, got {decay and decay.min}")


@config_dataclass
class HyperbandConfig:
    """Hyperband's schedule (`tuning.algorithm: hyperband`), in token units.

    Attributes:
        max_units: KerasTuner's `max_epochs`, counted in units of
            `tuning.tokens_per_trial / max_units` tokens: a configuration trained to the
            end gets `tokens_per_trial`, the first rung of the most aggressive bracket one unit.
        factor: KerasTuner's reduction factor (a third go on at factor 3).
        iterations: KerasTuner's `hyperband_iterations` (full passes over the brackets).
    """

    max_units: int = 9
    factor: int = 3
    iterations: int = 1

    def __post_init__(self):
        require_positive(self, "max_units", "iterations")
        require(self.factor >= 2, "factor", f"must be >= 2, got {self.factor}")


@config_dataclass
class TuningConfig:
    """The `tune` component's sweep (`components/tune.py`, `tuning/`; docs/tuning.md).

    Attributes:
        enabled: run `tune` in the pipeline; `train` then takes the best values.
        algorithm: `random`, `bayesian` (Gaussian process) or `hyperband`.
        max_trials: the most trials; raising it continues the same sweep.
        objective: what trials are ranked by, on the eval split: `eval_loss` (mean token
            NLL, nats) or `eval_perplexity`.
        tokens_per_trial: every trial's training budget in tokens (batch size x sequence
            length x steps, to within one batch), whatever its batch size; None: the
            training run's own budget.
        max_consecutive_failed_trials: stop the sweep after this many failures in a row.
        seed: the search's seed (KerasTuner reads 0 as "no seed", so >= 1; it seeds draw i
            with seed + i, so use seeds far apart for independent sweeps).
        space: the search space (`SearchSpaceConfig`).
        hyperband: Hyperband's budget schedule (`HyperbandConfig`).
    """

    enabled: bool = False
    algorithm: Literal["random", "bayesian", "hyperband"] = "random"
    max_trials: int = 10
    objective: Literal["eval_loss", "eval_perplexity"] = "eval_loss"
    tokens_per_trial: int | None = None
    max_consecutive_failed_trials: int = 3
    seed: int = 1
    space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    hyperband: HyperbandConfig = field(default_factory=HyperbandConfig)

    def __post_init__(self):
        require_positive(self, "max_trials", "tokens_per_trial", "max_consecutive_failed_trials")
        require(self.seed >= 1, "seed", f"must be >= 1 (KerasTuner takes 0 as no seed), "
                f"got {self.seed}")
        names = [f.name for f in fields(self.space)]
        require(any(getattr(self.space, name) is not None for name in names), "space",
                "tunes nothing: give at least one of " + ", ".join(names))


def check_tuning(config) -> None:
    """Cross-section checks of an enabled sweep: every choice must make a valid run.

    Args:
        config: the `LmpipeConfig` being built.
    """
    if config.tuning.enabled:
        _check_tuning_choices(config.tuning.space, config.train, config.model)
        _check_tuning_budget(config.tuning, config.train, config.transform.sequence_length)


def _check_tuning_choices(space, train, model) -> None:
    for size in space.batch_size or ():
        require(size % train.grad_accum_steps == 0, "tuning.space.batch_size",
                f"choices must be multiples of train.grad_accum_steps "
                f"({train.grad_accum_steps}), got {size}")
    for width in space.hidden_dim or ():
        require(width % model.num_heads == 0, "tuning.space.hidden_dim",
                f"choices must be multiples of model.num_heads ({model.num_heads}), got {width}")
        require(model.family != "llama" or (width // model.num_heads) % 2 == 0,
                "tuning.space.hidden_dim", f"choices must give llama an even head dim, "
                f"got {width} / {model.num_heads} heads")


def _check_tuning_budget(tuning, train, length: int) -> None:
    """Every batch size must get more steps than the warm-up, and Hyperband's smallest
    rung at least one batch (else the budgets are not equal to within a batch)."""
    space = tuning.space
    # None: the training run's own budget (tuning/budget.py `default_tokens`).
    budgets = [train.max_tokens] if train.max_tokens is not None else []
    if train.steps is not None:
        budgets.append(train.steps * train.batch_size * length)
    tokens = tuning.tokens_per_trial or min(budgets)
    shown = tuning.tokens_per_trial or f"null (the training run's {tokens} tokens)"
    sizes = space.batch_size or (train.batch_size,)
    warmup = max(space.warmup_steps or (train.warmup_steps,))
    for size in sizes:
        steps = -(-tokens // (size * length))
        require(steps > warmup, "tuning.tokens_per_trial",
                f"gives batch size {size} only {steps} steps at sequence length {length}, "
                f"not more than the warm-up ({warmup} steps); got {shown}")
    if tuning.algorithm == "hyperband":
        unit = tokens / tuning.hyperband.max_units
        require(unit >= max(sizes) * length, "tuning.tokens_per_trial",
                f"must give each Hyperband unit (tokens_per_trial / hyperband.max_units = "
                f"{unit:,.0f} tokens) at least one batch of the largest batch size "
                f"({max(sizes)} x {length} tokens); got {shown}")


@config_dataclass
class EvaluationConfig:
    """The release gate and what the evaluation reports (`components/evaluate.py`).

    Attributes:
        max_perplexity: value threshold on the overall perplexity (None: no bound).
        max_bits_per_byte_increase: change threshold against the model in service: overall
            bits per byte may worsen by at most this fraction (0.005 = 0.5%).
        max_slice_bits_per_byte_increase: the same on every slice of `slice_features`.
        slice_gate_min_examples: slice failures on fewer examples do not block the push.
        slice_features: one-value example features to slice by. Examples without a
            `length_bucket` feature get one derived from each window's `segment_ids`
            (its longest document span, in tokens).
        length_buckets: edges of that derived bucket (32, 64 -> 0-31, 32-63, 64+).
        min_slice_size: TFMA computes no metrics for smaller slices.
        batch_size: examples per model call in TFMA.
        num_samples: eval document beginnings to continue (0: none).
        sample_prompt_words: words of each document used as the prompt.
        sample_max_tokens, sample_temperature, sample_top_k, sample_top_p, seed: decoding
            of the samples (one greedy and one sampled continuation each).
    """

    max_perplexity: float | None = None
    max_bits_per_byte_increase: float | None = 0.005
    max_slice_bits_per_byte_increase: float | None = None
    slice_gate_min_examples: int = 20
    slice_features: tuple[str, ...] = ("domain", "length_bucket")
    length_buckets: tuple[int, ...] = (32, 64)
    min_slice_size: int = 1
    batch_size: int = 16
    num_samples: int = 4
    sample_prompt_words: int = 8
    sample_max_tokens: int = 32
    sample_temperature: float = 0.8
    sample_top_k: int = 0
    sample_top_p: float = 0.95
    seed: int = 0

    def __post_init__(self):
        require_positive(self, "max_perplexity", "batch_size", "min_slice_size",
                         "slice_gate_min_examples", "sample_prompt_words", "sample_max_tokens",
                         "sample_temperature")
        for name in ("max_bits_per_byte_increase", "max_slice_bits_per_byte_increase"):
            value = getattr(self, name)
            require(value is None or value >= 0, name,
                    f"must be >= 0 (a relative change, 0.005 = 0.5%), got {value}")
        require(len(set(self.slice_features)) == len(self.slice_features), "slice_features",
                f"must not repeat a feature, got {list(self.slice_features)}")
        buckets = list(self.length_buckets)
        require(all(b > 0 for b in buckets) and buckets == sorted(set(buckets)), "length_buckets",
                f"must be increasing token counts > 0, got {buckets}")
        require(self.num_samples >= 0, "num_samples", f"must be >= 0, got {self.num_samples}")
        require(self.sample_top_k >= 0, "sample_top_k",
                f"must be >= 0 (0 keeps all tokens), got {self.sample_top_k}")
        require(0.0 < self.sample_top_p <= 1.0, "sample_top_p",
                f"must be in (0, 1], got {self.sample_top_p}")


@config_dataclass
class PushConfig:
    """Where blessed models go (`components/push.py`).

    Attributes:
        serving_dir: the TF Serving style directory of numbered versions.
        keep_versions: how many of the newest versions to keep.
        variant: which export of the model is evaluated, gated and pushed: `float`
            (`saved_model/`) or `quantized` (`saved_model_int8/`, needs train.quantize).
    """

    serving_dir: str = "serving"
    keep_versions: int = 5
    variant: Literal["float", "quantized"] = "float"

    def __post_init__(self):
        require_positive(self, "keep_versions")
        require(bool(self.serving_dir.strip()), "serving_dir", "must be a directory path, got ''")


# Vertex AI names: a region, a label key or value (lowercase, digits, '_' and '-').
_VERTEX_LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_LABEL_PART = re.compile(r"^[a-z0-9_-]{0,63}$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_CRON_FIELD = re.compile(r"^[A-Za-z0-9*/,?#LW-]+$")


def _require_gcs(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value is None or (value.startswith("gs://") and len(value) > 5), name,
                f"must be a gs:// location, got {value!r}")


def _require_no_space(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value is None or (value != "" and not any(c.isspace() for c in value)), name,
                f"must be a non-empty name without spaces, got {value!r}")


@config_dataclass
class DataflowConfig:
    """How the Beam steps run on Vertex (`vertex.dataflow`); unset locations derive from `vertex`."""

    runner: Literal["DataflowRunner", "DirectRunner"] = "DataflowRunner"
    steps: tuple[str, ...] = ("ingest", "transform", "evaluate")
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    staging_location: str | None = None
    setup_file: str | None = None
    sdk_container_image: str | None = None
    machine_type: str = "n1-standard-4"
    max_num_workers: int = 10
    service_account_email: str | None = None
    extra_args: tuple[str, ...] = ()

    def __post_init__(self):
        _require_gcs(self, "temp_location", "staging_location")
        _require_no_space(self, "project", "setup_file", "sdk_container_image", "machine_type",
                          "service_account_email")
        require(self.region is None or bool(_VERTEX_LOCATION.match(self.region)), "region",
                f"must be a region such as us-central1, got {self.region!r}")
        require(not (self.setup_file and self.sdk_container_image), "setup_file",
                "set either setup_file or sdk_container_image, not both")
        require_positive(self, "max_num_workers")
        require(all(a.startswith("--") for a in self.extra_args), "extra_args",
                f"must be Beam options starting with --, got {list(self.extra_args)}")


@config_dataclass
class VertexMachineConfig:
    """The Vertex training cluster of one step (`vertex.train`, `vertex.tune`).

    One replica is the chief; `replica_count - 1` more are workers with the same machine.
    """

    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None
    accelerator_count: int = 1
    replica_count: int = 1
    tpu_topology: str | None = None
    boot_disk_size_gb: int = 100

    def __post_init__(self):
        _require_no_space(self, "machine_type", "tpu_topology")
        require(self.accelerator_type is None or bool(_ACCELERATOR.match(self.accelerator_type)),
                "accelerator_type",
                f"must be a Vertex accelerator such as NVIDIA_L4 or TPU_V3, got {self.accelerator_type!r}")
        require_positive(self, "accelerator_count", "replica_count")
        require(self.boot_disk_size_gb >= 10, "boot_disk_size_gb",
                f"must be >= 10, got {self.boot_disk_size_gb}")


@config_dataclass
class VertexConfig:
    """Where and how `lmpipe compile/submit/schedule --target vertex` run the pipeline."""

    project: str | None = None
    location: str = "us-central1"
    image: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    labels: tuple[str, ...] = ()
    enable_caching: bool = True
    cpu_limit: str | None = None
    memory_limit: str | None = None
    dataflow: DataflowConfig = field(default_factory=DataflowConfig)
    train: VertexMachineConfig = field(default_factory=VertexMachineConfig)
    tune: VertexMachineConfig = field(default_factory=VertexMachineConfig)

    def __post_init__(self):
        require(bool(_VERTEX_LOCATION.match(self.location)), "location",
                f"must be a region such as us-central1, got {self.location!r}")
        _require_gcs(self, "pipeline_root")
        _require_no_space(self, "project", "image", "cpu_limit", "memory_limit")
        require(self.service_account is None or self.service_account.count("@") == 1,
                "service_account", f"must be a service account email, got {self.service_account!r}")
        for label in self.labels:
            key, sep, value = label.partition("=")
            require(bool(sep and key and key[0].islower() and _LABEL_PART.match(key)
                         and _LABEL_PART.match(value)), "labels",
                    f"must be key=value with lowercase letters, digits, _ or -, got {label!r}")

    def label_dict(self) -> dict[str, str]:
        """The labels as Vertex wants them."""
        return dict(label.split("=", 1) for label in self.labels)


@config_dataclass
class ScheduleConfig:
    """When Vertex AI starts the pipeline (`lmpipe schedule --target vertex`)."""

    cron: str | None = None
    time_zone: str = "UTC"
    start_time: str | None = None
    end_time: str | None = None
    max_concurrent_runs: int = 1
    max_run_count: int | None = None
    allow_queueing: bool = False

    def __post_init__(self):
        fields = (self.cron or "").split()
        require(self.cron is None or (len(fields) == 5 and all(map(_CRON_FIELD.match, fields))),
                "cron", f"must be a cron expression of five fields such as '0 3 * * *', got {self.cron!r}")
        require(_is_time_zone(self.time_zone), "time_zone",
                f"must be an IANA time zone such as Europe/Berlin, got {self.time_zone!r}")
        start, end = _timestamp(self, "start_time"), _timestamp(self, "end_time")
        require(start is None or end is None or end > start, "end_time",
                f"must be after schedule.start_time ({self.start_time}), got {self.end_time}")
        require_positive(self, "max_concurrent_runs", "max_run_count")


def _is_time_zone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _timestamp(section: object, name: str):
    from datetime import datetime

    value = getattr(section, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    require(parsed is not None and parsed.tzinfo is not None, name,
            f"must be an RFC 3339 time with a zone such as 2027-01-01T03:00:00Z, got {value!r}")
    return parsed


def check_task(config) -> None:
    """Cross-section checks of `task`: the data fields it reads, its step and token budgets."""
    task, data = config.task, config.data
    require(task.type != "classification" or data.label_field is not None, "data.label_field",
            "must name the JSONL label field for task.type 'classification'")
    require(task.type != "text_to_text" or data.target_field is not None, "data.target_field",
            "must name the JSONL target field for task.type 'text_to_text'")
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
