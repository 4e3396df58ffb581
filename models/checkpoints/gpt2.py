"""GPT-2 (Hugging Face `model_type: gpt2`) onto `models.gpt.GPTBackbone` and `CausalLM`.

GPT-2 is what `GPTBackbone` already is (learned positions, pre-LayerNorm blocks with
biases, LayerNorm after the last block, the head tied to the token embedding) once its
MLP uses GELU's tanh approximation (`gelu_new`) and its LayerNorm epsilon is the
checkpoint's. Hugging Face stores GPT-2's projections as `Conv1D`, [in, out], the layout
of a Keras kernel; the fused query/key/value matrix is split and each part reshaped to
Keras' [hidden, heads, head_dim].
"""

from __future__ import annotations

import numpy as np

from models.checkpoints.common import Entry, refuse_unless

MODEL_TYPE = "gpt2"
# A KerasHub preset of GPT-2 (`preset.py`): its backbone class, and where its weights sit
# when not where lmpipe's are (path segments, ours -> keras-hub's).
PRESET_CLASS = "GPT2Backbone"
PRESET_IGNORED = ()  # every keras-hub weight is used
PRESET_HEAD_TASK = None  # the LM head is the tied token embedding
PRESET_PATHS = {"embeddings/token_embedding": "token_embedding",
                "embeddings/position_embedding": "position_embedding"}

# Hugging Face activation -> `GPTBackbone(activation=...)`.
_ACTIVATIONS = {"gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "gelu": "gelu"}

# Buffers older GPT-2 checkpoints carry (the causal mask), not weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def settings(config: dict, source: str) -> tuple[dict, dict]:
    """The `model` section and extra backbone arguments a GPT-2 config.json fixes.

    Args:
        config: the parsed config.json.
        source: its path (for messages).

    Returns:
        ({ModelConfig field: value}, {GPTBackbone argument: value}).

    Raises:
        UsageError: a setting `GPTBackbone` cannot express, naming the key and value.
    """
    activation = config.get("activation_function", "gelu_new")
    refuse_unless(activation in _ACTIVATIONS, source, "activation_function", activation)
    for key, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                           ("add_cross_attention", False)):
        refuse_unless(config.get(key, supported) == supported, source, key, config.get(key))
    hidden, heads = config["n_embd"], config["n_head"]
    refuse_unless(hidden % heads == 0, source, "n_head", heads)
    model = {"family": "gpt", "num_layers": config["n_layer"], "hidden_dim": hidden,
             "num_heads": heads, "intermediate_dim": config.get("n_inner") or 4 * hidden,
             "max_sequence_length": config["n_positions"],
             "tie_embeddings": bool(config.get("tie_word_embeddings", True))}
    backbone = {"activation": _ACTIVATIONS[activation],
                "layer_norm_epsilon": float(config.get("layer_norm_epsilon", 1e-5))}
    return model, backbone


def preset_settings(arguments: dict, source: str) -> tuple[dict, dict]:
    """The `model` section and backbone arguments of a keras-hub `GPT2Backbone` config
    (tanh GELU, LayerNorm epsilon 1e-5, the head tied: what keras-hub's GPT-2 computes).

    Raises:
        KeyError: a missing argument (`preset.read` names it).
    """
    model = {"family": "gpt", "num_layers": int(arguments["num_layers"]),
             "hidden_dim": int(arguments["hidden_dim"]), "num_heads": int(arguments["num_heads"]),
             "intermediate_dim": int(arguments["intermediate_dim"]),
             "max_sequence_length": int(arguments["max_sequence_length"]),
             "tie_embeddings": True}
    return model, {"activation": "gelu_approximate", "layer_norm_epsilon": 1e-5}


def entries(names: list[str], model: dict) -> dict[str, Entry]:
    """Our weight path -> where it comes from in the checkpoint, for the backbone and the
    causal LM head (`lm_head/kernel`, only when the head is untied).

    Args:
        names: the checkpoint's tensor names (to find the prefix it was saved with).
        model: the `settings` model section.
    """
    prefix = "transformer." if any(n.startswith("transformer.") for n in names) else ""
    hidden, heads = model["hidden_dim"], model["num_heads"]
    head_dim = hidden // heads
    found = {
        "embeddings/token_embedding/embeddings": Entry(f"{prefix}wte.weight"),
        "embeddings/position_embedding/embeddings": Entry(f"{prefix}wpe.weight"),
        "layer_norm/gamma": Entry(f"{prefix}ln_f.weight"),
        "layer_norm/beta": Entry(f"{prefix}ln_f.bias"),
    }
    for i in range(model["num_layers"]):
        ours, theirs = f"transformer_layer_{i}", f"{prefix}h.{i}"
        for part, index in (("query", 0), ("key", 1), ("value", 2)):
            found[f"{ours}/self_attention/{part}/kernel"] = Entry(
                f"{theirs}.attn.c_attn.weight", _fused_part(index, hidden, (hidden, heads, head_dim)))
            found[f"{ours}/self_attention/{part}/bias"] = Entry(
                f"{theirs}.attn.c_attn.bias", _fused_part(index, hidden, (heads, head_dim)))
        found[f"{ours}/self_attention/attention_output/kernel"] = Entry(
            f"{theirs}.attn.c_proj.weight", lambda w: w.reshape(heads, head_dim, hidden))
        found[f"{ours}/self_attention/attention_output/bias"] = Entry(f"{theirs}.attn.c_proj.bias")
        for norm, their_norm in (("self_attention_layer_norm", "ln_1"),
                                 ("feedforward_layer_norm", "ln_2")):
            found[f"{ours}/{norm}/gamma"] = Entry(f"{theirs}.{their_norm}.weight")
            found[f"{ours}/{norm}/beta"] = Entry(f"{theirs}.{their_norm}.bias")
        for dense, conv in (("feedforward_intermediate_dense", "c_fc"),
                            ("feedforward_output_dense", "c_proj")):
            found[f"{ours}/{dense}/kernel"] = Entry(f"{theirs}.mlp.{conv}.weight")
            found[f"{ours}/{dense}/bias"] = Entry(f"{theirs}.mlp.{conv}.bias")
    if not model["tie_embeddings"]:
        found["lm_head/kernel"] = Entry("lm_head.weight", np.transpose)
    return found


def _fused_part(index: int, hidden: int, shape: tuple):
    """Query (0), key (1) or value (2) of GPT-2's fused [.., 3 * hidden] projection."""
    def take(w):
        return w[..., index * hidden:(index + 1) * hidden].reshape(shape)
    return take
