"""Build the Keras model a config asks for (no TensorFlow here)."""

from __future__ import annotations

from models.causal_lm import CausalLM
from models.gpt import GPTBackbone


def _gpt_backbone(model_config, vocabulary_size: int) -> GPTBackbone:
    return GPTBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=model_config.num_layers,
        num_heads=model_config.num_heads,
        hidden_dim=model_config.hidden_dim,
        intermediate_dim=model_config.intermediate_dim,
        max_sequence_length=model_config.max_sequence_length,
        dropout=model_config.dropout,
        document_masking=model_config.document_masking,
        name="backbone",
    )


# model.family -> backbone builder; the families' config checks live in ModelConfig.
BACKBONES = {"gpt": _gpt_backbone}


def build_model(model_config, task_config, vocabulary_size: int):
    """The task model for `task.type` on the backbone for `model.family`.

    Args:
        model_config: `pipeline.config.ModelConfig`.
        task_config: `pipeline.config.TaskConfig`.
        vocabulary_size: the tokenizer's vocabulary size.

    Returns:
        A Keras model with freshly initialized weights, taking {token_ids, segment_ids}.
    """
    backbone = BACKBONES[model_config.family](model_config, vocabulary_size)
    if task_config.type == "lm":
        return CausalLM(backbone, tie_embeddings=model_config.tie_embeddings, name="causal_lm")
    raise ValueError(f"task.type {task_config.type!r} is not implemented")


def load_model(path: str):
    """Load a model saved as `.keras` (its classes are importable from here).

    Args:
        path: the `.keras` file.

    Returns:
        The Keras model, weights included.
    """
    import keras

    return keras.saving.load_model(path, custom_objects={"lmpipe>CausalLM": CausalLM,
                                                         "lmpipe>GPTBackbone": GPTBackbone})
