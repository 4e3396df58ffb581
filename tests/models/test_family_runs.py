"""Each new family through the CLI on the tiny corpus: train, evaluate, push, generate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import run_lmpipe

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family, sets", [("llama", ["model.num_kv_heads=1"]), ("bert", [])])
def test_family_runs_end_to_end_and_generates(tiny_config_file, tmp_path, family, sets):
    args = [arg for value in [f"model.family={family}", *sets] for arg in ("--set", value)]
    result = run_lmpipe("run", "--config", tiny_config_file, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["components"]["train"]["status"] == "executed"
    model_dir = Path(record["components"]["train"]["outputs"]["model"])
    summary = json.loads((model_dir / "train_summary.json").read_text())
    assert summary["hyperparameters"]["model"]["family"] == family
    vocab_size = json.loads(
        (Path(record["components"]["tokenizer"]["outputs"]["tokenizer"]) / "tokenizer.json")
        .read_text())["vocab_size"]
    # Better than a uniform guess after 30 steps (causal or masked-token NLL alike).
    assert summary["final_train_loss"] < math.log(vocab_size)
    assert summary["eval_loss"] < math.log(vocab_size)
    assert record["metrics"]["eval_perplexity"] > 1.0
    assert record["pushed_model"]

    generated = run_lmpipe("generate", "--model", tmp_path / "serving", "--prompt", "Return the",
                           "--max-tokens", "8", "--temperature", "0")
    assert generated.returncode == 0, generated.stderr[-3000:]
    line = generated.stdout.splitlines()[0]
    assert line.startswith("Return the") and len(line) > len("Return the")
