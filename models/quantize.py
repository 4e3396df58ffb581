"""Post-training int8 quantization of the serving model (`train.quantize`).

Keras 3's own int8 mode (`Model.quantize`) on a copy of the trained model: each dense
projection (`Dense`, `EinsumDense`: attention, MLP, output head) and the token embedding
keep their weights as int8 with one float scale per output channel (abs-max). Two modes:

- `int8` (dynamic range, Keras' default): at run time each projection also quantizes its
  input per token to int8, multiplies in int8 with an int32 accumulator and rescales.
- `int8_weights` (weight only): the int8 weights are cast back to float and rescaled at
  run time; the matmuls stay float.

Norms, biases and learned positions stay float in both. The model is then exported exactly as the float one (`models/export.py`): the
same `score`, `score_examples` and `generate` signatures on raw strings, the tokenizer
inside, loadable with only `tensorflow` and `tensorflow_text` imported.

Why a SavedModel and not a TFLite flatbuffer: `tf.lite.TFLiteConverter` (Optimize.DEFAULT,
select TF ops) converts the signatures, but the interpreter cannot run them: the tokenizer
is tensorflow-text's `SentencepieceOp`, which the Flex delegate does not carry
("FlexSentencepieceOp failed to prepare"), and TF 2.21 deprecates `tf.lite.Interpreter`.
A TFLite model of the network alone would leave tokenization and decoding to every
caller; the int8 SavedModel keeps the serving contract. See docs/compression.md.

Backend-agnostic Keras: no `tf.*` here (the export is `models/export.py`'s job).
"""

from __future__ import annotations

import os
import warnings

MODES = ("int8", "int8_weights")


def quantize_int8(model, mode: str = "int8") -> None:
    """Quantize `model`'s dense projections and token embedding to int8, in place.

    Args:
        model: a built Keras LM.
        mode: `int8` (dynamic range) or `int8_weights` (weight only).
    """
    import keras

    if mode not in MODES:
        raise ValueError(f"unknown int8 mode {mode!r} (expected one of {MODES})")
    activations = "default" if mode == "int8" else None
    config = keras.quantizers.Int8QuantizationConfig(activation_quantizer=activations)
    with warnings.catch_warnings():
        # Keras warns once per layer type that has nothing to quantize (norms, dropout).
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method.*")
        model.quantize(config=config)


def export_int8(model, tokenizer, window: int, directory: str, mode: str = "int8") -> None:
    """Quantize `model` (in place) and write it as a servable SavedModel.

    Args:
        model: a float Keras LM (a throwaway copy: it is changed).
        tokenizer: its tokenizer.
        window: the sequence length it was trained on.
        directory: the SavedModel directory to create.
        mode: `int8` or `int8_weights` (see `quantize_int8`).
    """
    from models.export import save_export

    quantize_int8(model, mode)
    save_export(model, tokenizer, window, directory)


def int8_weights(model) -> int:
    """How many of `model`'s weights are stored as int8."""
    return sum(int(_size(v.shape)) for v in model.weights if str(v.dtype) == "int8")


def _size(shape) -> int:
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def directory_bytes(directory: str) -> int:
    """Total size of the files below `directory`."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(directory) for name in names)


def describe_export(directory: str) -> dict:
    """Sizes of a SavedModel: all files, the variables, and the variables gzip-compressed
    (what a sparse, pruned model saves once compressed).

    Args:
        directory: a SavedModel directory.

    Returns:
        {"bytes", "variables_bytes", "variables_gzip_bytes"}.
    """
    import gzip

    variables = os.path.join(directory, "variables")
    compressed = 0
    for name in sorted(os.listdir(variables)):
        with open(os.path.join(variables, name), "rb") as f:
            compressed += len(gzip.compress(f.read(), compresslevel=6, mtime=0))
    return {"bytes": directory_bytes(directory), "variables_bytes": directory_bytes(variables),
            "variables_gzip_bytes": compressed}
