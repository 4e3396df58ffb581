"""`lmpipe generate` on a pushed model, in a fresh process, as a user runs it."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from components import push
from pipeline.core.contracts import serving_dir
from pipeline import serving as serving_lib
from pipeline.core.config import PushConfig
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm
from tests.conftest import run_lmpipe


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """A serving directory with two pushed versions; version 2 has its own table."""
    root = tmp_path_factory.mktemp("generate")
    tables = {}
    for version, seed in ((1, 1), (2, 5)):
        model = root / f"model-{version}"
        tables[version] = lm.write_bigram_model(model, seed=seed, sequence_length=16)
        blessing = root / f"blessing-{version}"
        blessing.mkdir()
        digest = serving_dir.saved_model_digest(str(model / "saved_model"))
        (blessing / "blessing.json").write_text(json.dumps({
            "blessed": True, "failures": [], "candidate": {"saved_model_sha256": digest}}))
        out = root / f"pushed-{version}"
        out.mkdir()
        push.run({"model": lm.artifact("Model", model, f"fp-{version}"),
                  "blessing": lm.artifact("ModelBlessing", blessing, "fp")},
                 {"pushed": str(out)}, Runtime(run_id=f"run-{version}", root=str(root)),
                 push=PushConfig(serving_dir=str(root / "serving")))
    assert lm.greedy_completion(tables[1], "abc", 12) != lm.greedy_completion(tables[2], "abc", 12)
    return {"dir": root / "serving", "tables": tables, "root": root}


def test_generate_streams_from_the_latest_pushed_version(serving, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abc\n\nhello world\n")
    result = run_lmpipe("generate", "--model", serving["dir"], "--prompts-file", prompts,
                        "--max-tokens", "20", "--temperature", "1.0", "--seed", "3",
                        "--stream-chunk", "3")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert [line[:len(p)] for line, p in zip(lines, ("abc", "hello world"))] == ["abc", "hello world"]
    completions = [lines[0][3:], lines[1][len("hello world"):]]
    assert all(len(c) == 20 and set(c) <= set("hijklmno") for c in completions)
    # Seven calls of three tokens, in another process, sample what one call of twenty does
    # with version 2 (not version 1, nor greedy decoding).
    signature = serving_lib.load_signature(str(serving["dir"] / "2"), "generate")
    assert [serving_lib.generate(signature, [p], max_tokens=20, temperature=1.0, top_k=0,
                                 top_p=1.0, seed=3)[0] for p in ("abc", "hello world")] == completions
    assert completions[0] != lm.greedy_completion(serving["tables"][2], "abc", 20)
    version_1 = serving_lib.load_signature(str(serving["dir"] / "1"), "generate")
    assert serving_lib.generate(version_1, ["abc"], max_tokens=20, temperature=1.0, top_k=0,
                                top_p=1.0, seed=3) != [completions[0]]


def test_model_may_be_a_serving_dir_a_savedmodel_or_a_model_artifact(serving):
    latest = str(serving["dir"] / "2")
    assert serving_lib.resolve_model_dir(str(serving["dir"])) == latest
    assert serving_lib.resolve_model_dir(latest) == latest
    artifact = serving["root"] / "model-1"
    assert serving_lib.resolve_model_dir(str(artifact)) == str(artifact / "saved_model")


def test_streaming_writes_each_piece_as_soon_as_it_is_made(serving, monkeypatch):
    events = []
    load = serving_lib.load_signature

    def logged_signature(model_dir, name):
        signature = load(model_dir, name)

        def call(**kwargs):
            events.append(("call", int(kwargs["max_new_tokens"].numpy())))
            return signature(**kwargs)
        return call

    class Out:
        def write(self, text):
            events.append(("write", text))

        def flush(self):
            events.append(("flush",))

    monkeypatch.setattr(serving_lib, "load_signature", logged_signature)
    args = argparse.Namespace(model=str(serving["dir"]), prompt="ab", prompts_file=None,
                              max_tokens=12, temperature=0.0, top_k=0, top_p=1.0, seed=0,
                              stream_chunk=5)
    assert serving_lib.generate_cli(args, out=Out()) == 0
    greedy = lm.greedy_completion(serving["tables"][2], "ab", 12)
    assert events == [("write", "ab"), ("flush",),
                      ("call", 5), ("write", greedy[:5]), ("flush",),
                      ("call", 5), ("write", greedy[5:10]), ("flush",),
                      ("call", 2), ("write", greedy[10:]), ("flush",),
                      ("write", "\n"), ("flush",)]


@pytest.mark.parametrize("make_model, message", [
    (lambda root: root / "missing", "no such directory"),
    (lambda root: root, "not a SavedModel"),
])
def test_bad_model_dir_exits_2_with_one_line(tmp_path, make_model, message):
    (tmp_path / "empty-serving").mkdir()
    model = make_model(tmp_path / "empty-serving")
    result = run_lmpipe("generate", "--model", model, "--prompt", "hi")
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("lmpipe: error: --model") and message in line


@pytest.mark.parametrize("flag, value, message", [
    ("--top-p", "0", "--top-p must be in (0, 1], got 0.0"),
    ("--stream-chunk", "-1", "--stream-chunk must be >= 0 (0 = as many tokens as one call can make), got -1"),
    ("--temperature", "nan", "--temperature must be >= 0 (0 = greedy), got nan"),
    ("--prompt", os.fsdecode(b"ok \xff\xfe bad"), "--prompt: not valid UTF-8 (at character 4)"),
])
def test_bad_sampling_setting_exits_2(serving, flag, value, message):
    result = run_lmpipe("generate", "--model", serving["dir"], "--prompt", "hi", flag, value)
    assert result.returncode == 2
    assert result.stderr.strip() == f"lmpipe: error: {message}"


@pytest.mark.parametrize("temperature", [1.0, 1e12])
def test_the_sampler_never_draws_a_banned_id_however_hot(temperature):
    """Padding, a second document start and the MLM mask are never sampled, not even at a
    temperature that flattens every other score (banning before scaling made them level)."""
    from types import SimpleNamespace

    import tensorflow as tf

    from models.export import LanguageModelExport

    sampler = SimpleNamespace(banned=tf.constant([True, False, True, False, False]))
    logits = tf.tile(tf.constant([[9.0, 0.0, 9.0, 0.0, 1.0]]), [4000, 1])
    drawn = LanguageModelExport._sample(sampler, logits, tf.constant(temperature), tf.constant(0),
                                        tf.constant(1.0), tf.constant([3, 4])).numpy()
    assert set(drawn.tolist()) == {1, 3, 4}
    greedy = LanguageModelExport._sample(sampler, logits[:1], tf.constant(0.0), tf.constant(0),
                                         tf.constant(1.0), tf.constant([3, 4])).numpy()
    assert greedy.tolist() == [4]


class _WindowedSignature:
    """A `generate` signature by the contract of `models.export`: "x" per token, at most
    `window - 1` tokens a call, eos after `eos_after` tokens of completion in all (it counts
    the x's of the prompt it is given, as a model would see its own earlier output)."""

    def __init__(self, window: int, eos_after: int, counts: bool = True):
        self.window, self.eos_after, self.counts, self.calls = window, eos_after, counts, 0

    def __call__(self, prompt, max_new_tokens, **_):
        import tensorflow as tf

        self.calls += 1
        made = prompt.numpy()[0].decode().count("x")
        new = min(int(max_new_tokens), self.window - 1, self.eos_after - made)
        outputs = {"completion": tf.constant(["x" * new])}
        if self.counts:
            outputs.update(new_tokens=tf.constant([new]),
                           ended=tf.constant([made + new == self.eos_after]))
        return outputs


def _stream(signature, max_tokens: int, chunk: int) -> list[str]:
    return list(serving_lib.stream(signature, "go ", max_tokens=max_tokens, chunk=chunk,
                                   temperature=0.0, top_k=0, top_p=1.0, seed=0))


@pytest.mark.parametrize("chunk, calls", [(0, 3), (3, 4), (5, 3), (40, 3)])
def test_a_completion_longer_than_the_window_has_max_tokens_however_it_is_cut(chunk, calls):
    """One call makes at most the window less one token (5 here), so 12 tokens take several
    calls whatever the chunk; streaming counts what each call made."""
    signature = _WindowedSignature(window=6, eos_after=100)
    pieces = _stream(signature, 12, chunk)
    assert "".join(pieces) == "x" * 12 and signature.calls == calls
    assert all(len(piece) <= min(chunk or 5, 5) for piece in pieces)


@pytest.mark.parametrize("chunk", [0, 3, 40])
def test_streaming_stops_where_the_model_ended(chunk):
    signature = _WindowedSignature(window=6, eos_after=7)
    assert "".join(_stream(signature, 12, chunk)) == "x" * 7
    # A call that ends mid-chunk is the last: no call after the eos.
    assert signature.calls == -(-7 // min(chunk or 5, 5))


def test_a_model_that_does_not_count_is_streamed_by_the_chunk_as_before():
    signature = _WindowedSignature(window=100, eos_after=7, counts=False)
    assert "".join(_stream(signature, 12, 5)) == "x" * 7 and signature.calls == 3
