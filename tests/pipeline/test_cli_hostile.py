"""The CLI and its config loader on hostile input: YAML that PyYAML accepts but means
trouble (duplicate keys, deep or self-referencing nesting, scalars its constructors refuse),
odd `--set` keys, an unusable pipeline root, a damaged metadata store, misused `lmpipe
component` arguments, and Ctrl-C or SIGTERM in the middle of a Beam step."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.core.config import LmpipeConfig
from pipeline.core.configio import apply_overrides, build, load_config, parse_yaml
from pipeline.entrypoint import parse_pairs, run_component
from pipeline.core.errors import ConfigError, UsageError
from pipeline.core.metadata import MetadataStore
from tests.conftest import REPO, build_config, run_lmpipe, tiny_raw_config
from tests.pipeline import fake_components

MINIMAL = {"data": {"inputs": ["corpus/*.jsonl"]}}


def _one_line_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    assert result.returncode == status, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- the config file and --set ---

def test_a_key_given_twice_is_refused_where_it_repeats(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data:\n  inputs: [a]\n  text_field: body\n  text_field: text\n")
    with pytest.raises(UsageError, match=r"dup.yaml: line 4 column 3 invalid YAML: "
                                         r"duplicate key 'text_field'"):
        load_config(path)
    with pytest.raises(UsageError, match="duplicate key 'a'"):
        apply_overrides(MINIMAL, ["data.inputs={a: 1, a: 2}"])


def test_a_merge_key_may_still_override_what_it_merges():
    merged = parse_yaml("base: &b {a: 1, c: 2}\nx:\n  <<: *b\n  a: 3\n", "s")
    assert merged["x"] == {"a": 3, "c": 2}


def test_yaml_nested_too_deeply_is_one_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("data:\n  inputs: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UsageError, match=r"deep.yaml: invalid YAML: nested too deeply"):
        load_config(path)


def test_a_self_referencing_alias_is_an_ordinary_config_error(tmp_path):
    path = tmp_path / "cycle.yaml"
    path.write_text("data: &d\n  inputs: [a]\n  again: *d\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "data.again"


def test_an_alias_chain_is_not_expanded(tmp_path):
    # 10 ** 8 strings if expanded; shared, it is 90 small lists.
    anchors = ["  - &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    raw = parse_yaml("anchors:\n" + "\n".join(anchors) + "\npipeline:\n  beam_args: *a8\n", "s")
    raw = {"pipeline": raw["pipeline"], **MINIMAL}
    with pytest.raises(ConfigError) as info:
        build(LmpipeConfig, apply_overrides(raw, []))
    assert info.value.key == "pipeline.beam_args[0]"
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("override, reason", [
    ("train.steps=" + "9" * 5000, "Exceeds the limit (4300 digits) for integer string conversion"),
    ("data.split_salt=2024-13-45", "month must be in 1..12"),
])
def test_a_scalar_yaml_cannot_construct_is_a_usage_error(override, reason):
    key = override.split("=")[0]
    with pytest.raises(UsageError) as info:
        apply_overrides(MINIMAL, [override])
    assert str(info.value).startswith(f"--set {key}: invalid YAML: {reason}")


@pytest.mark.parametrize("override", [".train=1", "train..steps=1", "train.=1", " =1"])
def test_set_with_an_empty_key_part_is_refused(override):
    with pytest.raises(UsageError, match="expected key.path=value"):
        apply_overrides(MINIMAL, [override])


def test_a_config_file_that_never_ends_is_refused():
    with pytest.raises(UsageError, match="/dev/zero: over 16 MB, not a config file"):
        load_config("/dev/zero")


# --- pipeline.root and the metadata store ---

@pytest.mark.parametrize("where, reason", [("file", "is a file, not a directory"),
                                           ("file/sub", "(Not a directory)")])
def test_a_pipeline_root_that_cannot_be_a_directory_is_status_2(tmp_path, tiny_config_file,
                                                               where, reason):
    (tmp_path / "file").write_text("not a directory")
    root = tmp_path / where
    line = _one_line_error(run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                                      "--set", f"pipeline.root={root}"))
    assert line.startswith("lmpipe: error: pipeline.root: ") and str(root) in line
    assert reason in line


def _real_store(path) -> None:
    """A store with enough rows to span many pages."""
    store = MetadataStore(str(path))
    for i in range(200):
        store.start_run(f"run-{i}", {"data": {"inputs": [f"corpus-{i}-" + "x" * 200]}})
    store.close()


def _truncated(path):
    _real_store(path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _overwritten_pages(path):
    _real_store(path)
    data = bytearray(path.read_bytes())
    noise = random.Random(0).randbytes(len(data) - 4096)
    data[4096:] = noise
    path.write_bytes(bytes(data))


def _foreign(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (x)")
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [_truncated, _overwritten_pages, _foreign,
                                    lambda p: p.write_text("not a database")],
                         ids=["truncated", "overwritten", "foreign", "text"])
def test_a_damaged_metadata_store_is_one_line_naming_it(tmp_path, damage):
    path = tmp_path / "root" / "metadata.sqlite"
    path.parent.mkdir()
    damage(path)
    before = path.read_bytes()
    with pytest.raises(UsageError, match="not a readable lmpipe metadata store") as info:
        MetadataStore(str(path))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
    line = _one_line_error(run_lmpipe("runs", "--root", path.parent))
    assert line == f"lmpipe: error: {info.value}"
    assert path.read_bytes() == before


def test_run_on_a_damaged_metadata_store_stops_before_any_step(tmp_path, tiny_config_file):
    path = tmp_path / "root" / "metadata.sqlite"
    path.parent.mkdir()
    path.write_text("not a database")
    line = _one_line_error(run_lmpipe("run", "--config", tiny_config_file))
    assert line.startswith(f"lmpipe: error: {path}: not a readable lmpipe metadata store")
    assert sorted(p.name for p in path.parent.iterdir()) == [".lmpipe.lock", "metadata.sqlite"]


def test_runs_limit_beyond_sqlite_integers_is_a_usage_error(tmp_path):
    _real_store(tmp_path / "metadata.sqlite")
    line = _one_line_error(run_lmpipe("runs", "--root", tmp_path, "--limit", str(2**63)))
    assert line == f"lmpipe: error: --limit {2**63}: expected a positive number of runs"


# --- lmpipe component ---

def test_an_input_or_output_given_twice_is_refused():
    with pytest.raises(UsageError, match=r"--output documents: given twice \(a and b\)"):
        parse_pairs(["documents=a", "documents=b"], "--output")


def _config(tmp_path):
    config = build_config({"pipeline": {"root": str(tmp_path / "root")},
                           "data": {"inputs": ["unused"]}})
    os.makedirs(config.pipeline.root)
    return config


def test_an_output_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(UsageError, match=r"--output out=.*/file: cannot be a directory \(a file\)"):
        run_component("alpha", _config(tmp_path), {}, {"out": str(tmp_path / "file")},
                      nodes=fake_components.nodes())
    assert (tmp_path / "file").read_text() == "keep me"


def test_an_input_directory_of_the_wrong_kind_is_a_usage_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(UsageError) as info:
        run_component("beta", _config(tmp_path), {"thing": str(tmp_path / "raw")},
                      {"out": str(tmp_path / "b")}, nodes=fake_components.nodes())
    assert str(info.value) == (f"component beta: --input thing={tmp_path / 'raw'}: no "
                               f"value.txt there (not a Thing artifact?)")
    assert not (tmp_path / "root" / "logs").exists()


# --- signals during a Beam step ---

def _slow_corpus(directory) -> None:
    """About 40 MB of distinct JSONL lines: several seconds of ingest on this machine."""
    directory.mkdir()
    rng = random.Random(0)
    words = [f"w{i}" for i in range(500)]
    with open(directory / "a.jsonl", "w", encoding="utf-8") as f:
        for i in range(200_000):
            f.write(json.dumps({"text": " ".join(rng.choices(words, k=40)) + f" {i}"}) + "\n")


@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_ingest_is_its_status_and_publishes_nothing(tmp_path, tiny_corpus,
                                                                   signum, status, word):
    _slow_corpus(tmp_path / "slow")
    raw = tiny_raw_config(tmp_path, tiny_corpus)
    raw["data"]["inputs"] = [str(tmp_path / "slow")]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--until",
         "ingest"], cwd=REPO, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
        if line.startswith("[ingest] 1 files"):  # the Beam pipeline is starting
            break
    time.sleep(3)  # into the reading, inside a Beam transform (Beam wraps what it raises)
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == status
    assert rest.strip().splitlines() == [f"lmpipe: error: {word}"]

    root = tmp_path / "root"
    record = json.loads((root / "latest_run.json").read_text())
    assert record["status"] == "failed" and record["components"]["ingest"]["status"] == "failed"
    assert [p.name for p in (root / "ingest").iterdir()] == [".staging"]
    assert list((root / "ingest" / ".staging").iterdir()) == []
