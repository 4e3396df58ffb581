"""Compression settings a user gets wrong: a pruning start past the run, and an int8 export
of a fine-tuned classifier, which evaluate must judge as the export push publishes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from tests.conftest import build_config, run_lmpipe, tiny_raw_config


@pytest.mark.parametrize("prune, message", [
    ({"target_sparsity": 0.5, "begin_step": 30},
     "config key 'train.prune.begin_step': must be below train.steps (30), where the schedule "
     "ends without prune.end_step, got 30"),
    ({"target_sparsity": 0.5, "begin_step": 1000},
     "config key 'train.prune.begin_step': must be below train.steps (30), where the schedule "
     "ends without prune.end_step, got 1000"),
])
def test_a_pruning_start_past_the_last_step_is_a_config_error(tmp_path, prune, message):
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["train"]["prune"] = prune
    with pytest.raises(ConfigError) as caught:
        build_config(raw)
    assert str(caught.value) == message


def test_a_pruning_start_in_a_token_budget_run_is_left_to_train(tmp_path):
    # The number of steps is only known once the examples are counted.
    raw = tiny_raw_config(tmp_path, tmp_path / "corpus")
    raw["train"].update(steps=None, max_tokens=10_000, prune={"target_sparsity": 0.5,
                                                              "begin_step": 1000})
    assert build_config(raw).train.prune.begin_step == 1000


def test_a_pruning_start_past_the_run_stops_before_ingest(tmp_path, tiny_config_file):
    result = run_lmpipe("run", "--config", tiny_config_file, "--set",
                        "train.prune.target_sparsity=0.5", "--set", "train.prune.begin_step=30")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "lmpipe: error: config key 'train.prune.begin_step': must be below train.steps (30), "
        "where the schedule ends without prune.end_step, got 30"]
    assert not (tmp_path / "root" / "ingest").exists()


LABELS = ["a", "b", "c"]


def _classifier_model(tmp_path):
    """A model artifact whose float and int8 exports are different classifiers, and examples."""
    from tests.tasks import task_fixtures

    rng = np.random.default_rng(11)
    tables = {name: rng.normal(size=(64, len(LABELS))) * 2.0 for name in ("float", "quantized")}
    records = task_fixtures.classification_records(tables["float"], 120, seed=5)
    examples = task_fixtures.write_examples(tmp_path / "examples", records,
                                            {"type": "classification", "labels": LABELS})
    for name, directory in (("float", "saved_model"), ("quantized", "saved_model_int8")):
        task_fixtures.write_table_classifier(tmp_path / "model" / directory, tables[name])
    return tables, records, examples


@pytest.mark.parametrize("variant", ["float", "quantized"])
def test_task_evaluate_judges_the_export_push_publishes(tmp_path, variant):
    from components import evaluate
    from pipeline.core.contracts.serving_dir import saved_model_digest
    from pipeline.core.contracts.model import VARIANT_DIRS
    from pipeline.core.artifacts import Artifact
    from pipeline.core.config import EvaluationConfig, PushConfig, TaskConfig
    from pipeline.local_runner import Runtime
    from tests.tasks import task_fixtures

    tables, records, examples = _classifier_model(tmp_path)
    inputs = {"model": Artifact(type="Model", uri=str(tmp_path / "model"), fingerprint="m"),
              "examples": Artifact(type="Examples", uri=str(examples), fingerprint="e")}
    outputs = {name: str(tmp_path / name) for name in ("evaluation", "blessing")}
    for directory in outputs.values():
        (tmp_path / directory).mkdir()
    runtime = Runtime(run_id="r", root=str(tmp_path), beam_args=("--direct_running_mode=in_memory",))
    evaluate.run(inputs, outputs, runtime, EvaluationConfig(batch_size=16),
                 TaskConfig(type="classification"), PushConfig(variant=variant))

    blessing = json.loads((tmp_path / "blessing" / "blessing.json").read_text())
    judged = tmp_path / "model" / VARIANT_DIRS[variant]
    assert blessing["candidate"]["saved_model_sha256"] == saved_model_digest(str(judged))
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["overall"]
    expected = task_fixtures.reference_classification(tables[variant], records)["accuracy"]
    other = task_fixtures.reference_classification(
        tables["quantized" if variant == "float" else "float"], records)["accuracy"]
    assert expected != other  # the two exports are told apart by their accuracy
    assert metrics["accuracy"] == pytest.approx(expected, abs=1e-9)
