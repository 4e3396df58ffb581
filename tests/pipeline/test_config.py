"""The config tree and its loader: every YAML file in the repo, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.config import LmpipeConfig
from pipeline.core.configio import apply_overrides, build, dump_yaml, load_config, parse_yaml, to_dict
from pipeline.core.errors import ConfigError, UsageError
from tests.conftest import REPO, run_lmpipe

MINIMAL = {"data": {"inputs": ["corpus/*.jsonl"]}}


def _repo_yaml_files() -> list[Path]:
    """The repository's own YAML files (virtualenvs, run outputs and the like left out)."""
    skip = {".venv", ".venv-peer", "runs", "demo", ".git", "node_modules"}
    return sorted(p for p in REPO.rglob("*.y*ml")
                  if p.suffix in (".yaml", ".yml") and not skip & set(p.relative_to(REPO).parts))


@pytest.mark.parametrize("path", _repo_yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_in_the_repo_parses(path):
    text = path.read_text(encoding="utf-8")
    assert parse_yaml(text, str(path)) is not None
    if path.name == "pipeline.yaml" or path.parent.name == "configs":
        config = load_config(path)
        assert isinstance(config, LmpipeConfig)


def test_pipeline_yaml_round_trips_through_print(tmp_path):
    config = load_config(REPO / "pipeline.yaml")
    printed = tmp_path / "printed.yaml"
    printed.write_text(dump_yaml(config))
    assert load_config(printed) == config


def test_defaults_fill_missing_sections():
    config = build(LmpipeConfig, MINIMAL)
    assert config.data.inputs == ("corpus/*.jsonl",)
    assert config.train.optimizer == "adamw"
    assert config.model.hidden_dim % config.model.num_heads == 0


@pytest.mark.parametrize("text,expected", [("1e-3", 0.001), ("3E+2", 300.0), ("2.5e-4", 2.5e-4),
                                           ("0.001", 0.001), ("5", 5)])
def test_scientific_notation_is_a_float(text, expected):
    config = build(LmpipeConfig, apply_overrides(MINIMAL, [f"train.learning_rate={text}"]))
    assert config.train.learning_rate == expected
    assert isinstance(config.train.learning_rate, float)


def test_set_values_are_yaml():
    raw = apply_overrides(MINIMAL, ['data.inputs=["a/*.txt", "b.jsonl"]', "train.steps=200",
                                    "push.serving_dir=/srv/models"])
    config = build(LmpipeConfig, raw)
    assert config.data.inputs == ("a/*.txt", "b.jsonl")
    assert config.train.steps == 200
    assert config.push.serving_dir == "/srv/models"
    assert MINIMAL == {"data": {"inputs": ["corpus/*.jsonl"]}}, "overrides must not mutate input"


@pytest.mark.parametrize("override,key,fragment", [
    ("train.stepz=3", "train.stepz", "unknown key"),
    ("nosection.x=1", "nosection", "unknown key"),
    ("train.steps=abc", "train.steps", "expected an integer"),
    ("train.steps=2.5", "train.steps", "expected an integer"),
    ("train.steps=true", "train.steps", "expected an integer"),
    ("train.steps=0", "train.steps", "must be > 0"),
    ("train.learning_rate=fast", "train.learning_rate", "expected a finite number"),
    ("train.learning_rate=.inf", "train.learning_rate", "expected a finite number, got inf"),
    ("train.learning_rate=1e400", "train.learning_rate", "expected a finite number, got inf"),
    ("train.steps=99999999999999999999999", "train.steps", "expected an integer (int64)"),
    ("train.optimizer=adamx", "train.optimizer", "expected one of"),
    ("model.hidden_dim=130", "model.hidden_dim", "multiple of model.num_heads"),
    ("data.eval_fraction=1.5", "data.eval_fraction", "between 0 and 1"),
    ("data.max_domains=0", "data.max_domains", "must be > 0"),
    ("data.max_dropped_fraction=1.0", "data.max_dropped_fraction", "must be at least 0 and below 1"),
    ("tuning.chief_wait_seconds=0", "tuning.chief_wait_seconds", "must be > 0"),
    ("data.inputs=[]", "data.inputs", "at least one"),
    ("data.inputs=corpus.txt", "data.inputs", "expected a list"),
    ("data.inputs=[3]", "data.inputs[0]", "expected a string"),
    ("transform.sequence_length=1024", "transform.sequence_length", "model.max_sequence_length"),
    # The TFRecords' gzip is a boolean; "compression" is the model's (distil, prune, int8).
    ("transform.gzip=gzip", "transform.gzip", "expected true or false, got 'gzip'"),
    ("transform.compression=gzip", "transform.compression", "unknown key (known here: gzip,"),
    ("train=5", "train", "expected a mapping"),
    # TensorFlow reads a model's path as a pattern: `run[1]` would load `run1`'s weights.
    ("pipeline.root=/data/run[1]", "pipeline.root", "must not hold *, ? or ["),
    ("push.serving_dir=/srv/models*", "push.serving_dir", "must not hold *, ? or ["),
    ("train.warm_start=/data/lm?", "train.warm_start", "must not hold *, ? or ["),
    ("train.distill.teacher=/data/t[0]", "train.distill.teacher", "must not hold *, ? or ["),
])
def test_bad_values_name_the_key(override, key, fragment):
    with pytest.raises(ConfigError) as info:
        build(LmpipeConfig, apply_overrides(MINIMAL, [override]))
    assert info.value.key == key
    assert fragment in str(info.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="'data.inputs': is required"):
        build(LmpipeConfig, {"data": {}})


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  inputs: [a\n  text_field: x\n")
    with pytest.raises(UsageError, match=r"bad.yaml: line \d+ column \d+ invalid YAML"):
        load_config(path)


def test_yaml_tags_that_build_objects_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("data:\n  inputs: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(UsageError, match="invalid YAML"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_set_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="'train.steps': is a value, not a section"):
        apply_overrides({**MINIMAL, "train": {"steps": 3}}, ["train.steps.x=1"])


def test_config_is_frozen():
    config = build(LmpipeConfig, MINIMAL)
    with pytest.raises(Exception):
        config.train.steps = 5


def test_to_dict_is_plain_data():
    data = to_dict(build(LmpipeConfig, MINIMAL))
    assert data["data"]["inputs"] == ["corpus/*.jsonl"]
    assert data["train"]["clip_norm"] == 1.0


@pytest.mark.parametrize("args,fragment", [
    (["--set", "model.num_heads=3"], "config key 'model.hidden_dim'"),
    (["--set", "train.optimizer=nope"], "config key 'train.optimizer'"),
    (["--set", "novalue"], "expected key.path=value"),
])
def test_cli_config_errors_are_one_line_with_status_2(args, fragment):
    result = run_lmpipe("config", "--config", REPO / "pipeline.yaml", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_config_prints_the_resolved_config():
    result = run_lmpipe("config", "--config", REPO / "pipeline.yaml", "--set", "train.steps=700")
    assert result.returncode == 0, result.stderr
    printed = parse_yaml(result.stdout, "stdout")
    assert printed["train"]["steps"] == 700
    assert printed["data"]["inputs"] == ["demo/corpus/*.jsonl"]
