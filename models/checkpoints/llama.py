"""Llama (Hugging Face `model_type: llama`) onto `models.llama.LlamaBackbone` and `CausalLM`.

Llama is what `LlamaBackbone` already is (rotary positions rotating the two halves of each
head, RMSNorm, SwiGLU, grouped-query attention, no biases), given the checkpoint's rotary
base, RMSNorm epsilon and MLP width. Hugging Face stores `nn.Linear` weights as [out, in]:
each is transposed to a Keras kernel and the attention ones reshaped per head. Rotary
scaling (Llama 3.1's `llama3`, YaRN, linear), biases, another head size or activation are
refused by key and value: the import would not compute what the checkpoint did.

The tokenizer is SentencePiece (`tokenizer.model`), which the project already serves
with tensorflow-text's op (`models/tokenizer.py`, types `bpe` and `unigram`).
"""

from __future__ import annotations

import numpy as np

from models.checkpoints.common import Entry, refuse_unless

MODEL_TYPE = "llama"
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)  # a buffer older checkpoints saved
# A KerasHub preset of Llama (`preset.py`): its backbone class, and where its weights sit
# (path segments, ours -> keras-hub's); an untied head is the reverse embedding there.
PRESET_CLASS = "LlamaBackbone"
PRESET_IGNORED = ()  # every keras-hub weight is used
PRESET_HEAD_TASK = None  # the LM head is the token embedding, or its reverse embedding
PRESET_PATHS = {"attention": "self_attention", "attention_norm": "self_attention_layernorm",
                "mlp_norm": "feedforward_layernorm", "gate": "feedforward_gate_dense",
                "up": "feedforward_intermediate_dense", "down": "feedforward_output_dense",
                "layer_norm": "sequence_output_layernorm",
                "lm_head/kernel": "token_embedding/reverse_embeddings"}
# keras-hub's rotary scaling arguments (Llama 3.1's), and the value that means none.
_PRESET_ROPE_SCALING = {"rope_position_scaling_factor": 1.0,
                        "rope_frequency_adjustment_factor": None, "rope_low_freq_factor": None,
                        "rope_high_freq_factor": None, "rope_pretraining_sequence_length": None}


def _rope_theta(config: dict, source: str) -> float:
    """The rotary base, from transformers 5's `rope_parameters` or the older keys."""
    parameters = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling")
    kind = parameters.get("rope_type", (scaling or {}).get("rope_type", "default"))
    refuse_unless(kind == "default", source, "rope_type", kind)
    refuse_unless(scaling is None or scaling.get("rope_type", scaling.get("type")) == "default",
                  source, "rope_scaling", scaling)
    return float(parameters.get("rope_theta", config.get("rope_theta", 10_000.0)))


def settings(config: dict, source: str) -> tuple[dict, dict]:
    """The `model` section and extra backbone arguments a Llama config.json fixes.

    Raises:
        UsageError: a setting `LlamaBackbone` cannot express, naming the key and value.
    """
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    refuse_unless(config.get("hidden_act", "silu") == "silu", source, "hidden_act",
                  config.get("hidden_act"))
    for key in ("attention_bias", "mlp_bias"):
        refuse_unless(not config.get(key, False), source, key, config.get(key))
    refuse_unless(config.get("pretraining_tp", 1) == 1, source, "pretraining_tp",
                  config.get("pretraining_tp"))
    refuse_unless(hidden % heads == 0 and (hidden // heads) % 2 == 0, source,
                  "num_attention_heads", heads)
    refuse_unless(config.get("head_dim") in (None, hidden // heads), source, "head_dim",
                  config.get("head_dim"))
    refuse_unless(heads % kv_heads == 0, source, "num_key_value_heads", kv_heads)
    model = {"family": "llama", "num_layers": config["num_hidden_layers"], "hidden_dim": hidden,
             "num_heads": heads, "num_kv_heads": kv_heads,
             "intermediate_dim": config["intermediate_size"],
             "max_sequence_length": config["max_position_embeddings"],
             "rope_max_wavelength": _rope_theta(config, source),
             "tie_embeddings": bool(config.get("tie_word_embeddings", False))}
    backbone = {"layer_norm_epsilon": float(config.get("rms_norm_eps", 1e-6))}
    return model, backbone


def preset_settings(arguments: dict, source: str) -> tuple[dict, dict]:
    """The `model` section and backbone arguments of a keras-hub `LlamaBackbone` config.

    Rotary positions need no table, so the preset fixes no `max_sequence_length` (the
    run's `model.max_sequence_length` bounds the window).

    Raises:
        KeyError: a missing argument (`preset.read` names it).
        UsageError: rotary scaling, which `LlamaBackbone` does not compute.
    """
    for key, none in _PRESET_ROPE_SCALING.items():
        refuse_unless(arguments.get(key, none) == none, source, key, arguments.get(key))
    hidden, heads = int(arguments["hidden_dim"]), int(arguments["num_query_heads"])
    refuse_unless(hidden % heads == 0 and (hidden // heads) % 2 == 0, source,
                  "num_query_heads", heads)
    model = {"family": "llama", "num_layers": int(arguments["num_layers"]), "hidden_dim": hidden,
             "num_heads": heads, "num_kv_heads": int(arguments["num_key_value_heads"]),
             "intermediate_dim": int(arguments["intermediate_dim"]),
             "rope_max_wavelength": float(arguments.get("rope_max_wavelength", 10_000.0)),
             "tie_embeddings": bool(arguments.get("tie_word_embeddings", False))}
    return model, {"layer_norm_epsilon": float(arguments.get("layer_norm_epsilon", 1e-6))}


def entries(names: list[str], model: dict) -> dict[str, Entry]:
    """Our weight path -> where it comes from, for the backbone and the untied head."""
    prefix = "model." if any(n.startswith("model.") for n in names) else ""
    hidden, heads, kv_heads = model["hidden_dim"], model["num_heads"], model["num_kv_heads"]
    head_dim = hidden // heads
    found = {"token_embedding/embeddings": Entry(f"{prefix}embed_tokens.weight"),
             "layer_norm/scale": Entry(f"{prefix}norm.weight")}
    for i in range(model["num_layers"]):
        ours, theirs = f"transformer_layer_{i}", f"{prefix}layers.{i}"
        for part, projection, count in (("query", "q_proj", heads), ("key", "k_proj", kv_heads),
                                        ("value", "v_proj", kv_heads)):
            found[f"{ours}/attention/{part}/kernel"] = Entry(
                f"{theirs}.self_attn.{projection}.weight", _heads_in(hidden, count, head_dim))
        found[f"{ours}/attention/attention_output/kernel"] = Entry(
            f"{theirs}.self_attn.o_proj.weight", lambda w: w.T.reshape(heads, head_dim, hidden))
        found[f"{ours}/attention_norm/scale"] = Entry(f"{theirs}.input_layernorm.weight")
        found[f"{ours}/mlp_norm/scale"] = Entry(f"{theirs}.post_attention_layernorm.weight")
        for dense in ("gate", "up", "down"):
            found[f"{ours}/{dense}/kernel"] = Entry(f"{theirs}.mlp.{dense}_proj.weight",
                                                    np.transpose)
    if not model["tie_embeddings"]:
        found["lm_head/kernel"] = Entry("lm_head.weight", np.transpose)
    return found


def _heads_in(hidden: int, count: int, head_dim: int):
    """[count * head_dim, hidden] (torch) -> [hidden, count, head_dim] (Keras EinsumDense)."""
    return lambda w: w.T.reshape(hidden, count, head_dim)
