"""GPT-2 checkpoints: a run that starts from one (`train.init_from`) and hostile
checkpoints (one line each, naming the file and the tensor or key).

The equality of every family's import with the reference is `test_equality.py`; KerasHub
presets are `test_presets.py`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.checkpoints.helpers import (fitting, framed_logits, imported_model,
                                       imported_tokenizer, read_safetensors,
                                       score_in_fresh_process, write_safetensors)
from tests.conftest import run_lmpipe, tiny_documents, tiny_raw_config, write_jsonl


@pytest.fixture(scope="module")
def gpt2(make_reference):
    return make_reference("gpt2")


@pytest.fixture(scope="module")
def imported(gpt2):
    return imported_model(gpt2.directory)


@pytest.mark.slow
def test_a_run_from_the_checkpoint_pushes_the_reference_model(gpt2, tmp_path):
    """`train.init_from` end to end: the tokenizer step imports the checkpoint's tokenizer,
    train its weights; with a learning rate too small to move them, the pushed model
    still scores text as the reference does."""
    corpus = write_jsonl(tmp_path / "corpus" / "corpus.jsonl", tiny_documents(5)).parent
    raw = tiny_raw_config(tmp_path, corpus)
    del raw["model"]  # the checkpoint's config gives the shape
    raw["train"].update({"init_from": str(gpt2.directory), "steps": 2, "learning_rate": 1e-9,
                         "warmup_steps": 0, "log_every": 1})
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(raw))
    result = run_lmpipe("run", "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported byte_bpe (400 ids) from the checkpoint" in result.stderr
    assert f"weights from the gpt2 checkpoint {gpt2.directory}" in result.stderr
    run = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    summary = json.loads((next((tmp_path / "root" / "train").glob("*/model"))
                          / "train_summary.json").read_text())
    assert summary["init_from"]["weights_assigned"] == 36
    assert summary["hyperparameters"]["model"]["num_layers"] == 2
    assert summary["hyperparameters"]["model"]["max_sequence_length"] == 128
    pushed = tmp_path / "serving" / "1"
    assert run["status"] == "succeeded" and pushed.is_dir()
    keep = fitting(gpt2, 32)  # the pushed window is transform.sequence_length
    scored = score_in_fresh_process(pushed, [gpt2.strings[i] for i in keep], tmp_path)
    np.testing.assert_allclose(scored["nll"], gpt2.nll[keep], rtol=1e-4, atol=1e-3)


# --- hostile checkpoints: one line each, naming the file and the tensor or key ---


def copy_checkpoint(gpt2, tmp_path):
    target = tmp_path / "checkpoint"
    shutil.copytree(gpt2.directory, target)
    return target


def refusal(function, *args) -> str:
    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError) as caught:
        function(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_unsupported_architectures_and_settings_are_refused(gpt2, tmp_path):
    from models.checkpoints import read_checkpoint

    directory = copy_checkpoint(gpt2, tmp_path)
    edit_config(directory, model_type="t5")
    assert 'model_type="t5" is not supported' in refusal(read_checkpoint, directory)
    edit_config(directory, model_type="mistral")
    assert "not yet" in refusal(read_checkpoint, directory)
    edit_config(directory, model_type="llama")  # a GPT-2 config is not a Llama one
    assert "config.json: key 'hidden_size' is missing" in refusal(read_checkpoint, directory)
    edit_config(directory, model_type="gpt2", activation_function="relu")
    message = refusal(read_checkpoint, directory)
    assert 'activation_function="relu"' in message and "config.json" in message
    edit_config(directory, activation_function="gelu_new", scale_attn_by_inverse_layer_idx=True)
    assert "scale_attn_by_inverse_layer_idx=true" in refusal(read_checkpoint, directory)
    (directory / "config.json").write_text("{not json")
    assert "config.json: not JSON" in refusal(read_checkpoint, directory)


def test_missing_and_truncated_weights_are_refused(gpt2, tmp_path):
    from models.checkpoints import load_weights, read_checkpoint

    model, _ = imported_model(gpt2.directory)
    directory = copy_checkpoint(gpt2, tmp_path)
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])
    message = refusal(load_weights, model, read_checkpoint(directory))
    assert "model.safetensors: truncated" in message
    weights.unlink()
    (directory / "pytorch_model.bin").write_bytes(b"\0")
    message = refusal(load_weights, model, read_checkpoint(directory))
    assert "no model.safetensors" in message and "pytorch_model.bin" in message


def test_a_tensor_of_the_wrong_shape_is_refused_and_nothing_is_loaded(gpt2, imported, tmp_path):
    from models.checkpoints import load_weights, read_checkpoint

    directory = copy_checkpoint(gpt2, tmp_path)
    tensors = read_safetensors(directory / "model.safetensors")
    name = next(n for n in tensors if n.endswith("ln_f.bias"))  # among the last assigned
    tensors[name] = np.zeros(31, np.float32)
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"] + 1.0
    write_safetensors(directory / "model.safetensors", tensors)
    model, _ = imported
    before = [np.array(w) for w in model.get_weights()]
    message = refusal(load_weights, model, read_checkpoint(directory))
    assert f"tensor {name} has shape [31]" in message and "layer_norm/beta [32]" in message
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    tensors[name] = np.zeros(32, np.float32)
    tensors["transformer.h.0.attn.extra.weight"] = np.zeros(3, np.float32)
    write_safetensors(directory / "model.safetensors", tensors)
    message = refusal(load_weights, model, read_checkpoint(directory))
    assert "transformer.h.0.attn.extra.weight is not part of a gpt2 model" in message


def test_sharded_checkpoints_load_and_a_missing_shard_is_refused(gpt2, imported, tmp_path):
    from models.checkpoints import load_weights, read_checkpoint

    directory = copy_checkpoint(gpt2, tmp_path)
    tensors = read_safetensors(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for shard, members in shards.items():
        write_safetensors(directory / shard, {n: tensors[n] for n in members})
    index = {"metadata": {}, "weight_map": {n: s for s, ms in shards.items() for n in ms}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    reference_model, _ = imported
    model, _ = imported_model(directory)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(),
                                                    reference_model.get_weights()))
    (directory / "model-00002-of-00002.safetensors").unlink()
    message = refusal(load_weights, model, read_checkpoint(directory))
    assert "model-00002-of-00002.safetensors: no such weights file" in message


def test_a_tokenizer_of_another_size_is_refused(gpt2, tmp_path):
    from models.checkpoints import read_checkpoint, tokenizer_of

    directory = copy_checkpoint(gpt2, tmp_path)
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    tokenizer["added_tokens"].append({"id": 400, "content": "<|extra|>", "special": True})
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    message = refusal(tokenizer_of, read_checkpoint(directory))
    assert "tokenizer.json: the tokenizer has 401 ids" in message and "vocab_size is 400" in message


def test_a_padded_embedding_imports_and_never_generates_a_row_beyond_the_tokenizer(
        gpt2, imported, tmp_path):
    """448 embedding rows for the tokenizer's 400 ids (as GPT-2's 50304 for 50257): the
    first 400 logits are the reference's, and the rows beyond, made to win greedy
    decoding, are never generated (the export's `generate`, called in process)."""
    import tensorflow as tf

    from models.checkpoints import read_checkpoint, tokenizer_of
    from models.export import LanguageModelExport

    reference_model, _ = imported
    prompt = "def f(x):"
    ids = tf.function(imported_tokenizer(gpt2.directory).tokenize)(tf.constant([prompt]))
    framed = np.array([[gpt2.bos] + ids.to_list()[0]], np.int32)
    inputs = {"token_ids": framed, "segment_ids": np.ones_like(framed)}
    hidden = np.asarray(reference_model.backbone(inputs))[0, -1]
    top = float(np.abs(np.asarray(reference_model(inputs))[0, -1]).max())
    directory = copy_checkpoint(gpt2, tmp_path)
    tensors = read_safetensors(directory / "model.safetensors")
    wte = tensors["transformer.wte.weight"]
    tensors["transformer.wte.weight"] = np.concatenate(
        [wte, np.tile(hidden * (10 * top / hidden.dot(hidden)), (48, 1))]).astype(np.float32)
    write_safetensors(directory / "model.safetensors", tensors)
    edit_config(directory, vocab_size=448)
    fields, _ = tokenizer_of(read_checkpoint(directory))
    assert (fields["vocab_size"], fields["token_count"]) == (448, 400)
    model, _ = imported_model(directory)
    rows = [row for row in gpt2.ids if len(row) < 40][:20]
    ours = framed_logits(model, rows, gpt2.bos, gpt2.eos)
    theirs = [gpt2.logits[gpt2.ids.index(row)] for row in rows]
    assert max(float(np.abs(a[:, :400] - b).max()) for a, b in zip(ours, theirs)) < 1e-4
    last = np.asarray(model(inputs))[0, -1]
    assert int(np.argmax(last)) >= 400  # unmasked, a row beyond the tokenizer would win
    tokenizer = imported_tokenizer(directory)
    export = LanguageModelExport(model, tokenizer, 32)  # held: its tf.functions hold it weakly
    out = export.generate(prompt=tf.constant([prompt]), max_new_tokens=tf.constant(1),
                          temperature=tf.constant(0.0), top_k=tf.constant(0),
                          top_p=tf.constant(1.0), seed=tf.constant(0))
    chosen = int(np.argmax(last[:400]))
    expected = b"" if chosen == gpt2.eos else tf.function(tokenizer.detokenize)(
        tf.constant([[chosen]], tf.int32)).numpy()[0]
    assert out["completion"].numpy()[0] == expected


def test_a_conflicting_model_setting_names_both_values(gpt2):
    from models.checkpoints import read_checkpoint, resolve_model_config
    from pipeline.core.config import ModelConfig

    checkpoint = read_checkpoint(str(gpt2.directory))
    message = refusal(resolve_model_config, ModelConfig(num_layers=6), checkpoint)
    assert "model.num_layers is 6 but the checkpoint" in message and "has 2" in message
    # A value equal to the checkpoint's, or the user's dropout, is no conflict.
    resolved = resolve_model_config(ModelConfig(num_layers=2, dropout=0.1), checkpoint)
    assert (resolved.hidden_dim, resolved.dropout, resolved.tie_embeddings) == (32, 0.1, True)


def test_the_cli_refuses_an_unsupported_checkpoint_in_one_line(gpt2, tmp_path):
    directory = copy_checkpoint(gpt2, tmp_path)
    edit_config(directory, model_type="mamba")
    corpus = write_jsonl(tmp_path / "corpus" / "corpus.jsonl", tiny_documents(2)).parent
    raw = tiny_raw_config(tmp_path, corpus)
    raw["train"]["init_from"] = str(directory)
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(raw))
    result = run_lmpipe("run", "--config", config)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f'{directory}/config.json: model_type="mamba" is not supported' in result.stderr


def test_the_checkpoint_fingerprint_follows_its_files(gpt2, tmp_path):
    import os

    from pipeline.core.contracts.model import resolve_checkpoint

    directory = copy_checkpoint(gpt2, tmp_path)
    first = resolve_checkpoint(str(directory)).fingerprint
    assert resolve_checkpoint(str(directory)).fingerprint == first
    os.utime(directory / "model.safetensors", ns=(1, 1))
    assert resolve_checkpoint(str(directory)).fingerprint != first


def test_settings_that_contradict_a_checkpoint_start_are_refused(gpt2, tmp_path):
    from components.tokenizer.checkpoint import source
    from pipeline.core.errors import ConfigError
    from tests.conftest import build_config

    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["train"]["init_from"] = str(gpt2.directory)
    assert source(build_config(raw)).properties["checkpoint"] == str(gpt2.directory)
    with pytest.raises(ConfigError, match="train.warm_start are both set"):
        build_config({**raw, "train": {**raw["train"], "warm_start": str(tmp_path)}})
    tuned = {**raw, "tuning": {"enabled": True, "tokens_per_trial": 100_000}}
    message = refusal(source, build_config(tuned))
    assert "tuning.enabled and train.init_from are both set" in message
