"""BERT (Hugging Face `model_type: bert`) onto `models.bert.BertBackbone` and `MaskedLM`.

BERT is what `BertBackbone` is (learned positions, embeddings LayerNorm, post-LayerNorm
encoder blocks with biases, exact GELU) plus its token-type embedding, whose row 0 every
single-segment input adds (`num_token_types`). `MaskedLM`'s head is BERT's prediction head
(dense, GELU, LayerNorm, the tied embedding plus a bias). `nn.Linear` weights are [out, in]
and are transposed (and split per head) into Keras kernels.

A classifier on an imported BERT takes the backbone and trains a new head over lmpipe's
pooling (`task.pooling`); BERT's own pooler and next-sentence head are not used (and not
imported). A checkpoint without the prediction head (a bare `BertModel`) can only start
a classifier: a masked LM from it is refused, naming the missing tensor.
"""

from __future__ import annotations

import numpy as np

from models.checkpoints.common import Entry, refuse_unless

MODEL_TYPE = "bert"
# What lmpipe does not use: the pooler, next-sentence prediction, the decoder (it is the
# tied word embedding and the prediction bias again) and the position-id buffer.
IGNORED_SUFFIXES = ("pooler.dense.weight", "pooler.dense.bias", "seq_relationship.weight",
                    "seq_relationship.bias", "predictions.decoder.weight",
                    "predictions.decoder.bias", "embeddings.position_ids")

# A KerasHub preset of BERT (`preset.py`): its backbone class, where its weights sit (path
# segments, ours -> keras-hub's), its pooler (not used), and the task whose weights hold
# the masked-LM head (a `BertMaskedLM` preset; a backbone alone has no head).
PRESET_CLASS = "BertBackbone"
PRESET_PATHS = {"embeddings/token_embedding": "token_embedding",
                "embeddings/position_embedding": "position_embedding",
                "token_type_embedding": "segment_embedding"}
PRESET_IGNORED = ("pooled_dense/kernel", "pooled_dense/bias")
PRESET_HEAD_TASK = "BertMaskedLM"


def settings(config: dict, source: str) -> tuple[dict, dict]:
    """The `model` section and extra backbone arguments a BERT config.json fixes.

    Raises:
        UsageError: a setting `BertBackbone` cannot express, naming the key and value.
    """
    for key, supported in (("hidden_act", "gelu"), ("position_embedding_type", "absolute"),
                           ("is_decoder", False), ("add_cross_attention", False),
                           ("tie_word_embeddings", True)):
        refuse_unless(config.get(key, supported) == supported, source, key, config.get(key))
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    refuse_unless(hidden % heads == 0, source, "num_attention_heads", heads)
    model = {"family": "bert", "num_layers": config["num_hidden_layers"], "hidden_dim": hidden,
             "num_heads": heads, "intermediate_dim": config["intermediate_size"],
             "max_sequence_length": config["max_position_embeddings"], "tie_embeddings": True}
    backbone = {"layer_norm_epsilon": float(config.get("layer_norm_eps", 1e-12)),
                "num_token_types": int(config.get("type_vocab_size", 2))}
    return model, backbone


def preset_settings(arguments: dict, source: str) -> tuple[dict, dict]:
    """The `model` section and backbone arguments of a keras-hub `BertBackbone` config:
    keras-hub's encoder blocks use GELU's tanh approximation (its `BertMaskedLM` head the
    exact one, as lmpipe's), every LayerNorm epsilon 1e-12 but the head's (keras-hub's
    `MaskedLMHead` default, 1e-5).

    Raises:
        KeyError: a missing argument (`preset.read` names it).
    """
    hidden, heads = int(arguments["hidden_dim"]), int(arguments["num_heads"])
    refuse_unless(hidden % heads == 0, source, "num_heads", heads)
    model = {"family": "bert", "num_layers": int(arguments["num_layers"]), "hidden_dim": hidden,
             "num_heads": heads, "intermediate_dim": int(arguments["intermediate_dim"]),
             "max_sequence_length": int(arguments["max_sequence_length"]),
             "tie_embeddings": True}
    return model, {"layer_norm_epsilon": 1e-12, "activation": "gelu_approximate",
                   "num_token_types": int(arguments.get("num_segments", 2)),
                   "head_layer_norm_epsilon": 1e-5}


def entries(names: list[str], model: dict) -> dict[str, Entry]:
    """Our weight path -> where it comes from, for the backbone and the masked-LM head."""
    prefix = "bert." if any(n.startswith("bert.") for n in names) else ""
    hidden, heads = model["hidden_dim"], model["num_heads"]
    head_dim = hidden // heads
    embeddings = f"{prefix}embeddings"
    found = {
        "embeddings/token_embedding/embeddings": Entry(f"{embeddings}.word_embeddings.weight"),
        "embeddings/position_embedding/embeddings": Entry(
            f"{embeddings}.position_embeddings.weight"),
        "token_type_embedding/embeddings": Entry(f"{embeddings}.token_type_embeddings.weight"),
        **_norm("embeddings_layer_norm", f"{embeddings}.LayerNorm"),
        "mlm_head/output_bias": Entry("cls.predictions.bias"),
        "mlm_head/intermediate_dense/kernel": Entry("cls.predictions.transform.dense.weight",
                                                    np.transpose),
        "mlm_head/intermediate_dense/bias": Entry("cls.predictions.transform.dense.bias"),
        **_norm("mlm_head/intermediate_layer_norm", "cls.predictions.transform.LayerNorm"),
    }
    for i in range(model["num_layers"]):
        ours, theirs = f"transformer_layer_{i}", f"{prefix}encoder.layer.{i}"
        attention = f"{ours}/self_attention_layer"
        for part in ("query", "key", "value"):
            found[f"{attention}/{part}/kernel"] = Entry(
                f"{theirs}.attention.self.{part}.weight",
                lambda w: w.T.reshape(hidden, heads, head_dim))
            found[f"{attention}/{part}/bias"] = Entry(
                f"{theirs}.attention.self.{part}.bias", lambda b: b.reshape(heads, head_dim))
        found[f"{attention}/attention_output/kernel"] = Entry(
            f"{theirs}.attention.output.dense.weight",
            lambda w: w.T.reshape(heads, head_dim, hidden))
        found[f"{attention}/attention_output/bias"] = Entry(
            f"{theirs}.attention.output.dense.bias")
        found.update(_norm(f"{ours}/self_attention_layer_norm",
                           f"{theirs}.attention.output.LayerNorm"))
        for dense, their_dense in (("feedforward_intermediate_dense", "intermediate.dense"),
                                   ("feedforward_output_dense", "output.dense")):
            found[f"{ours}/{dense}/kernel"] = Entry(f"{theirs}.{their_dense}.weight",
                                                    np.transpose)
            found[f"{ours}/{dense}/bias"] = Entry(f"{theirs}.{their_dense}.bias")
        found.update(_norm(f"{ours}/feedforward_layer_norm", f"{theirs}.output.LayerNorm"))
    return found


def _norm(ours: str, theirs: str) -> dict[str, Entry]:
    return {f"{ours}/gamma": Entry(f"{theirs}.weight"), f"{ours}/beta": Entry(f"{theirs}.bias")}
