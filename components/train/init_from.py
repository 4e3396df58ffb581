"""`train.init_from`: starting training from a pretrained checkpoint's weights.

The checkpoint (`models/checkpoints/`) fixes the model's shape: its config fills the
`model` section (a conflicting value the user set is refused) and adds the backbone
arguments the section has no key for (GPT-2's tanh GELU, its norm epsilon). The tokenizer
step already turned the checkpoint's tokenizer into this run's, so the tokenizer's size
must be the checkpoint's vocabulary. Every weight is read and checked before any is
assigned: a refused checkpoint leaves nothing half-loaded to train on.
"""

from __future__ import annotations

from models.checkpoints import Checkpoint, load_weights, read_checkpoint, resolve_model_config
from pipeline.core.errors import UsageError


def resolve(directory: str, model_config) -> tuple[Checkpoint, object]:
    """The checkpoint at `directory` and the `model` section it fixes.

    Args:
        directory: the resolved `init_from` input's path.
        model_config: the run's `ModelConfig` (tuned values applied).

    Returns:
        (`Checkpoint`, `ModelConfig`).

    Raises:
        UsageError: an unreadable or unsupported checkpoint, or a conflicting `model.*`.
    """
    checkpoint = read_checkpoint(directory)
    return checkpoint, resolve_model_config(model_config, checkpoint)


def load(model, checkpoint: Checkpoint, tokenizer_info) -> dict:
    """Overwrite the freshly built `model` with the checkpoint's weights.

    Args:
        model: built from `resolve`'s section and `checkpoint.backbone`.
        checkpoint: the `Checkpoint`.
        tokenizer_info: this run's `TokenizerInfo`.

    Returns:
        What the training record keeps: directory, layout, family, weights assigned.

    Raises:
        UsageError: the tokenizer is not the checkpoint's size, or its weights do not fit.
    """
    if tokenizer_info.vocab_size != checkpoint.vocabulary_size:
        raise UsageError(f"train.init_from {checkpoint.directory}: this run's tokenizer has "
                         f"{tokenizer_info.vocab_size} ids, the checkpoint's vocab_size is "
                         f"{checkpoint.vocabulary_size}")
    assigned = load_weights(model, checkpoint)
    return {"directory": checkpoint.directory, "layout": checkpoint.layout,
            "model_type": checkpoint.model_type, "weights_assigned": assigned}
