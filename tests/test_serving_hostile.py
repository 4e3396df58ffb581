"""Hostile input on the serving side: `lmpipe generate` flags that TensorFlow would wrap,
`--model` paths of the wrong kind, odd entries in a serving directory, a serving directory
that is a file, and pushes racing for the same version number."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from components import push
from pipeline.core.contracts import serving_dir
from pipeline import serving as serving_lib
from pipeline.core.config import PushConfig, TaskConfig
from pipeline.core.errors import UsageError
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm
from tests.conftest import REPO, run_lmpipe


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three different model artifacts (bigram tables of seeds 1, 2, 3)."""
    root = tmp_path_factory.mktemp("hostile")
    for seed in (1, 2, 3):
        lm.write_bigram_model(root / f"model-{seed}", seed=seed, sequence_length=16)
    return [root / f"model-{seed}" for seed in (1, 2, 3)]


def _blessing(directory, model):
    directory.mkdir()
    digest = serving_dir.saved_model_digest(str(model / "saved_model"))
    (directory / "blessing.json").write_text(json.dumps({
        "blessed": True, "failures": [], "candidate": {"saved_model_sha256": digest}}))
    return directory


def _push(tmp_path, model, serving, run_id, keep=5):
    out = tmp_path / f"pushed-{run_id}"
    out.mkdir()
    blessing = _blessing(tmp_path / f"blessing-{run_id}", model)
    push.run({"model": lm.artifact("Model", model, f"fp-{run_id}"),
              "blessing": lm.artifact("ModelBlessing", blessing, f"fp-b-{run_id}")},
             {"pushed": str(out)}, Runtime(run_id=run_id, root=str(tmp_path)),
             push=PushConfig(serving_dir=str(serving), keep_versions=keep))
    return json.loads((out / "push.json").read_text())


@pytest.mark.parametrize("flag, value, message", [
    # TensorFlow wraps int32: seed 2**32 would sample exactly what seed 0 does.
    ("--seed", str(2**32), f"--seed must fit in 32 bits (-2147483648..2147483647), got {2**32}"),
    ("--seed", str(2**63), f"--seed must fit in 32 bits (-2147483648..2147483647), got {2**63}"),
    ("--top-k", str(2**63), f"--top-k must fit in 32 bits (-2147483648..2147483647), got {2**63}"),
    ("--max-tokens", str(2**32 + 1),
     f"--max-tokens must fit in 32 bits (-2147483648..2147483647), got {2**32 + 1}"),
    ("--temperature", "1e39", "--temperature must be at most 3.402823e+38 (float32), got 1e+39"),
])
def test_values_the_signature_would_wrap_exit_2_before_any_output(models, flag, value, message):
    result = run_lmpipe("generate", "--model", models[0], "--prompt", "hi", "--stream-chunk",
                        "0", flag, value)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"lmpipe: error: {message}"


def test_the_int32_bounds_themselves_are_accepted():
    for seed in (-2**31, 2**31 - 1):
        serving_lib.check_sampling(1, 1.0, 2**31 - 1, 1.0, 2**31 - 1, seed)
    with pytest.raises(UsageError, match="--seed must fit in 32 bits"):
        serving_lib.check_sampling(1, 1.0, 0, 1.0, 0, -2**31 - 1)


def _memory_limit():
    """In the child: 1 GB of address space, so that reading without a bound ends at once
    (in a MemoryError) instead of filling the machine's memory."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def test_a_prompts_file_that_never_ends_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "generate", "--model", str(tmp_path),
         "--prompts-file", "/dev/zero"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_memory_limit)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("lmpipe: error: --prompts-file /dev/zero: over 16 MB (give the "
                             "prompts in smaller files)\n")


def test_a_prompts_file_is_read_up_to_16_mb(tmp_path):
    path = tmp_path / "prompts.txt"
    line = b"x" * 1023 + b"\n"
    path.write_bytes(line * 2**14)  # 16 MB exactly: every line a prompt
    assert len(serving_lib.read_prompts(None, str(path))) == 2**14
    with open(path, "ab") as f:
        f.write(b"y")
    with pytest.raises(UsageError, match=r"prompts.txt: over 16 MB"):
        serving_lib.read_prompts(None, str(path))


def test_prompts_are_the_lines_a_text_file_gives(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n\n  \nfour")
    assert serving_lib.read_prompts(None, str(path)) == ["one", "two", "three", "four"]


def test_model_that_is_a_file_is_named_as_such(models):
    keras_file = models[0] / "model.keras"
    keras_file.write_bytes(b"not a SavedModel")
    result = run_lmpipe("generate", "--model", keras_file, "--prompt", "hi")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"lmpipe: error: --model {keras_file}: not a directory "
        "(expected a SavedModel, a model artifact or a serving directory)")


def test_non_ascii_digit_names_are_not_versions(models, tmp_path):
    serving = tmp_path / "serving"
    shutil.copytree(models[0] / "saved_model", serving / "1")
    for odd in ("²", "١٢", "abc", "-1", "007"):
        (serving / odd).mkdir()
    # '²'.isdigit() is true and int('²') raises; '١٢' is int 12 under a name that is not '12'.
    assert [v.number for v in serving_dir.versions(str(serving))] == [1]
    assert serving_lib.resolve_model_dir(str(serving)) == str(serving / "1")
    assert serving_dir.next_version(str(serving)) == 8  # '007' holds 7, so no collision
    assert _push(tmp_path, models[1], serving, "next")["version"] == 8


def test_a_serving_dir_that_is_a_file_is_a_usage_error(models, tmp_path):
    from components.evaluate import resolve_baseline

    serving = tmp_path / "serving"
    serving.write_text("not a directory")
    with pytest.raises(UsageError, match=f"^serving directory {serving}: not a directory$"):
        _push(tmp_path, models[0], serving, "push")
    # What the resolver reads.
    config = SimpleNamespace(task=TaskConfig(), push=PushConfig(serving_dir=str(serving)))
    with pytest.raises(UsageError, match="not a directory"):
        resolve_baseline(config, {"model": lm.artifact("Model", models[0], "fp")})
    assert serving.read_text() == "not a directory"


def test_push_takes_the_next_number_when_another_push_took_its_own(models, tmp_path,
                                                                    monkeypatch):
    serving = tmp_path / "serving"
    assert _push(tmp_path, models[0], serving, "first")["version"] == 1
    real = serving_dir.next_version
    looks = []

    def stale_then_real(path):
        # The first look happened before the other push's rename: it still says 1.
        looks.append(path)
        return 1 if len(looks) == 1 else real(path)

    monkeypatch.setattr(serving_dir, "next_version", stale_then_real)
    record = _push(tmp_path, models[1], serving, "second")
    assert len(looks) == 2
    assert record["pushed"] is True and record["version"] == 2 and record["replaced"] == 1
    assert sorted(os.listdir(serving)) == ["1", "2"]  # no staging copy left behind
    card = serving_dir.read_card(str(serving / "2"))
    assert card["version"] == 2 and card["replaces"]["version"] == 1
    assert card["model"]["saved_model_sha256"] == serving_dir.saved_model_digest(
        str(models[1] / "saved_model"))


def test_prune_skips_a_version_another_push_already_removed(models, tmp_path, monkeypatch):
    serving = tmp_path / "serving"
    for number in (1, 2, 3):
        shutil.copytree(models[0] / "saved_model", serving / str(number))
    stale = serving_dir.versions(str(serving))
    shutil.rmtree(serving / "1")  # the other push pruned it after we listed
    monkeypatch.setattr(serving_dir, "versions", lambda path: stale)
    assert serving_dir.prune(str(serving), keep=1) == [2]
    assert sorted(os.listdir(serving)) == ["3"]


def _race_worker(index, model, blessing, serving, ready, results):
    sys.path.insert(0, str(REPO))
    from components import push as push_module
    from pipeline.core.artifacts import Artifact

    out = os.path.join(os.path.dirname(serving), f"out-{index}")
    os.makedirs(out)
    serving_dir.saved_model_digest(os.path.join(model, "saved_model"))  # imports Beam now
    ready.wait()  # all three look at the serving directory at about the same moment
    try:
        push_module.run({"model": Artifact(type="Model", uri=model, fingerprint=f"m{index}"),
                         "blessing": Artifact(type="ModelBlessing", uri=blessing,
                                              fingerprint=f"b{index}")},
                        {"pushed": out}, Runtime(run_id=f"race-{index}", root=out),
                        push=PushConfig(serving_dir=serving))
        with open(os.path.join(out, "push.json"), encoding="utf-8") as f:
            results.put((index, json.load(f)["version"]))
    except Exception as err:  # noqa: BLE001  (reported to the test, which fails on it)
        results.put((index, f"{err.__class__.__name__}: {err}"))


def test_three_pushes_racing_get_three_versions(models, tmp_path):
    serving = str(tmp_path / "serving")
    blessings = [str(_blessing(tmp_path / f"blessing-{i}", model))
                 for i, model in enumerate(models)]
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_race_worker,
                               args=(i, str(models[i]), blessings[i], serving, ready, results))
               for i in range(3)]
    for worker in workers:
        worker.start()
    outcome = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(outcome.values()) == [1, 2, 3], outcome
    assert sorted(os.listdir(serving)) == ["1", "2", "3"]
    for index, version in outcome.items():
        card = serving_dir.read_card(os.path.join(serving, str(version)))
        assert card["version"] == version and card["run_id"] == f"race-{index}"
        assert serving_dir.saved_model_digest(os.path.join(serving, str(version))) == \
            serving_dir.saved_model_digest(str(models[index] / "saved_model"))


def test_generate_inputs_are_the_exports(models):
    from models.export import GENERATE_SIGNATURE

    assert serving_lib.GENERATE_INPUTS == {spec.name: spec.dtype.name
                                           for spec in GENERATE_SIGNATURE}


def test_a_generate_signature_of_another_contract_exits_2_before_any_output(tmp_path):
    import tensorflow as tf

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
        def generate(self, prompt):
            return {"completion": prompt}

    module = Echo()
    tf.saved_model.save(module, str(tmp_path / "echo"), signatures={"generate": module.generate})
    result = run_lmpipe("generate", "--model", tmp_path / "echo", "--prompt", "hi")
    assert result.returncode == 2 and result.stdout == ""
    model = tmp_path / "echo"
    assert result.stderr.strip().splitlines() == [
        f"model: {model}",
        f"lmpipe: error: --model {model}: its 'generate' signature is not lmpipe's (takes "
        "prompt:string; expected prompt:string, max_new_tokens:int32, temperature:float32, "
        "top_k:int32, top_p:float32, seed:int32 -> completion)"]


def test_a_model_card_that_is_not_utf8_reads_as_no_card(tmp_path):
    (tmp_path / serving_dir.MODEL_CARD).write_bytes(b"\xff{")
    assert serving_dir.read_card(str(tmp_path)) == {}
