"""Build the Keras model a config asks for (no TensorFlow here)."""

from __future__ import annotations

from models.attention import CachedGroupedQueryAttention
from models.bert import BertBackbone
from models.causal_lm import CausalLM
from models.classifier import SequenceClassifier, SequencePooling
from models.gpt import GPTBackbone
from models.llama import LlamaBackbone, LlamaDecoderBlock
from models.masked_lm import MaskedLM


# model.family -> its backbone; the families' config checks live in ModelConfig.
BACKBONES = {"gpt": GPTBackbone, "llama": LlamaBackbone, "bert": BertBackbone}

# task.type lm, by objective: the model on the backbone and its name.
LM_MODELS = {"causal": (CausalLM, "causal_lm"), "masked": (MaskedLM, "masked_lm")}


def _build_backbone(model_config, vocabulary_size: int, backbone_arguments: dict | None = None):
    """The backbone for `model.family`, freshly initialized.

    Args:
        model_config: `pipeline.core.config.ModelConfig`.
        vocabulary_size: the tokenizer's vocabulary size.
        backbone_arguments: arguments the `model` section has no key for (an imported
            checkpoint's activation or norm epsilon, `models/checkpoints/`).

    Returns:
        A `GPTBackbone`, `LlamaBackbone` or `BertBackbone` named `backbone`.
    """
    arguments = dict(
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
    if model_config.family == "llama":
        arguments.update(num_key_value_heads=model_config.num_kv_heads,
                         rope_max_wavelength=model_config.rope_max_wavelength)
    arguments.update(backbone_arguments or {})
    return BACKBONES[model_config.family](**arguments)


CUSTOM_OBJECTS = {f"lmpipe>{cls.__name__}": cls for cls in (
    CausalLM, MaskedLM, GPTBackbone, LlamaBackbone, LlamaDecoderBlock,
    CachedGroupedQueryAttention, BertBackbone, SequenceClassifier, SequencePooling)}


def build_model(model_config, task_config, vocabulary_size: int,
                num_classes: int | None = None, backbone_arguments: dict | None = None):
    """The model `task.type` asks for, on the backbone for `model.family`.

    Args:
        model_config: `pipeline.core.config.ModelConfig`.
        task_config: `pipeline.core.config.TaskConfig`.
        vocabulary_size: the tokenizer's vocabulary size.
        num_classes: the label vocabulary's size (task.type classification only).
        backbone_arguments: see `_build_backbone`.

    Returns:
        A Keras model with freshly initialized weights, taking {token_ids, segment_ids}
        and returning logits: [B, L, vocabulary_size] for `lm` and `text_to_text` (a
        causal LM), [B, num_classes] for `classification`.
    """
    backbone = _build_backbone(model_config, vocabulary_size, backbone_arguments)
    if task_config.type == "lm":
        model_class, name = LM_MODELS[model_config.training_objective]
        return model_class(backbone, tie_embeddings=model_config.tied_embeddings, name=name)
    if task_config.type == "text_to_text":
        return CausalLM(backbone, tie_embeddings=model_config.tied_embeddings, name="causal_lm")
    if task_config.type == "classification":
        if not num_classes:
            raise ValueError("task.type classification needs num_classes (the label vocabulary)")
        return SequenceClassifier(backbone, num_classes, pooling=task_config.pooling,
                                  dropout=model_config.dropout, name="classifier")
    raise ValueError(f"task.type {task_config.type!r} is not implemented")


def load_model(path: str):
    """Load a model saved as `.keras` (its classes are importable from here).

    Args:
        path: the `.keras` file.

    Returns:
        The Keras model, weights included.
    """
    import keras

    return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS)
