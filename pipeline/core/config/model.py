"""`model` (the network) and `task` (what it is trained to do)."""

from __future__ import annotations

from typing import Literal

from pipeline.core.config.checks import config_dataclass, require, require_positive


@config_dataclass
class ModelConfig:
    """The network (`models/factory.py` maps these onto the backbone's and head's arguments).

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
