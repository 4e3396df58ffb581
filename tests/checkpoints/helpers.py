"""Building lmpipe's side of a checkpoint test: the imported model, its tokenizer, and
safetensors files written by hand (for hostile checkpoints)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np


def imported_model(directory, task_type: str = "lm"):
    """(model, checkpoint) built from the checkpoint's config, its weights loaded."""
    from models.checkpoints import load_weights, read_checkpoint, resolve_model_config
    from models.factory import build_model
    from pipeline.core.config import ModelConfig, TaskConfig

    checkpoint = read_checkpoint(str(directory))
    model_config = resolve_model_config(ModelConfig(), checkpoint)
    model = build_model(model_config, TaskConfig(type=task_type), checkpoint.vocabulary_size,
                        backbone_arguments=checkpoint.backbone,
                        num_classes=3 if task_type == "classification" else None)
    load_weights(model, checkpoint)
    return model, checkpoint


def imported_tokenizer(directory):
    """The checkpoint's tokenizer as lmpipe's `TextTokenizer`."""
    from models.checkpoints import read_checkpoint, tokenizer_of
    from models.tokenizer import TextTokenizer
    from pipeline.core.contracts.tokenizer import TokenizerInfo

    fields, model = tokenizer_of(read_checkpoint(str(directory)))
    return TextTokenizer(TokenizerInfo(**fields), model)


def framed_logits(model, rows: list[list[int]], bos: int, eos: int) -> list[np.ndarray]:
    """Logits of `[bos] + row + [eos]` for every row, in one padded batch."""
    framed = [[bos] + row + [eos] for row in rows]
    width = max(len(r) for r in framed)
    tokens = np.zeros((len(framed), width), np.int32)
    segments = np.zeros_like(tokens)
    for i, row in enumerate(framed):
        tokens[i, :len(row)] = row
        segments[i, :len(row)] = 1
    logits = np.asarray(model({"token_ids": tokens, "segment_ids": segments}))
    return [logits[i, :len(row)] for i, row in enumerate(framed)]


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All float32 tensors of a safetensors file (test-side, independent of lmpipe's reader)."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    header.pop("__metadata__", None)
    tensors = {}
    for name, entry in header.items():
        assert entry["dtype"] == "F32", entry
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[8 + size + begin:8 + size + end],
                                      "<f4").reshape(entry["shape"])
    return tensors


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write float32 tensors in the safetensors format."""
    header, chunks, offset = {}, [], 0
    for name, value in tensors.items():
        raw = np.ascontiguousarray(value, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


# Loaded in a fresh process with only tensorflow and tensorflow_text, as a server would.
SCORE_IN_FRESH_PROCESS = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401 (its ops)
model = tf.saved_model.load(sys.argv[1])
texts = json.load(open(sys.argv[2], encoding="utf-8"))
out = model.signatures["score"](text=tf.constant(texts))
print(json.dumps({"nll": out["nll"].numpy().tolist(),
                  "num_tokens": out["num_tokens"].numpy().tolist(),
                  "keras_hub_imported": "keras_hub" in sys.modules}))
"""


def score_in_fresh_process(saved_model, texts, tmp_path) -> dict:
    """The SavedModel's `score` of `texts`, computed in a fresh process."""
    import subprocess
    import sys

    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", SCORE_IN_FRESH_PROCESS, str(saved_model),
                             str(texts_file)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def fitting(reference, window: int) -> list[int]:
    """Indices of the strings whose `[bos] + ids + [eos]` fits one window (scored in one
    piece, as the reference scored them)."""
    return [i for i, ids in enumerate(reference.ids) if len(ids) + 2 <= window]
