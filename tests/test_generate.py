"""`lmpipe generate` on a pushed model, in a fresh process, as a user runs it."""

from __future__ import annotations

import json

import pytest

from components import push
from pipeline import serving as serving_lib
from pipeline.config import PushConfig
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
        (blessing / "blessing.json").write_text(json.dumps({"blessed": True, "failures": []}))
        out = root / f"pushed-{version}"
        out.mkdir()
        push.run({"model": lm.artifact("Model", model, f"fp-{version}"),
                  "blessing": lm.artifact("ModelBlessing", blessing, "fp")},
                 {"pushed": str(out)}, Runtime(run_id=f"run-{version}", root=str(root)),
                 push=PushConfig(serving_dir=str(root / "serving")))
    assert lm.greedy_completion(tables[1], "abc", 12) != lm.greedy_completion(tables[2], "abc", 12)
    return {"dir": root / "serving", "tables": tables, "root": root}


def test_generate_uses_the_latest_pushed_version(serving, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abc\n\nhello world\n")
    result = run_lmpipe("generate", "--model", serving["dir"], "--prompts-file", prompts,
                        "--max-tokens", "12", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    table = serving["tables"][2]
    assert result.stdout.splitlines() == [
        "abc" + lm.greedy_completion(table, "abc", 12),
        "hello world" + lm.greedy_completion(table, "hello world", 12)]
    assert "Traceback" not in result.stderr


def test_generate_accepts_a_savedmodel_and_samples_reproducibly(serving):
    version_1 = str(serving["dir"] / "1")
    result = run_lmpipe("generate", "--model", version_1, "--prompt", "xyz", "--max-tokens", "20",
                        "--temperature", "1.0", "--seed", "3")
    assert result.returncode == 0, result.stderr
    completion = result.stdout.rstrip("\n")[len("xyz"):]
    assert len(completion) == 20 and set(completion) <= set("abcdefgh")
    assert completion != lm.greedy_completion(serving["tables"][1], "xyz", 20)
    # The same seed in another process samples the same text.
    signature = serving_lib.load_signature(serving_lib.resolve_model_dir(version_1), "generate")
    again = serving_lib.generate(signature, ["xyz"], max_tokens=20, temperature=1.0, top_k=0,
                                 top_p=1.0, seed=3)
    assert again == [completion]


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


def test_bad_sampling_setting_exits_2(serving):
    result = run_lmpipe("generate", "--model", serving["dir"], "--prompt", "hi", "--top-p", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "lmpipe: error: --top-p must be in (0, 1], got 0.0"
