"""The local runner: caching, --no-cache, --until, atomic publication, failures, the lock."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from pipeline.core.errors import LockedError, UsageError
from pipeline.local_runner import ComponentFailed, run_pipeline
from pipeline.lock import RootLock
from tests.conftest import build_config
from tests.pipeline import fake_components


def _config(tmp_path, **sections):
    raw = {"pipeline": {"root": str(tmp_path / "root")}, "data": {"inputs": ["unused"]}}
    for name, values in sections.items():
        raw[name] = values
    return build_config(raw)


def _run(config, **kwargs):
    return run_pipeline(config, nodes=fake_components.nodes(), **kwargs)


def _calls(config) -> list[str]:
    path = os.path.join(config.pipeline.root, "calls.log")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        calls = f.read().split()
    os.remove(path)
    return calls


def test_second_run_is_cached_and_reuses_outputs(tmp_path):
    config = _config(tmp_path)
    first = _run(config)
    assert _calls(config) == ["alpha", "beta", "gamma"]
    second = _run(config)
    assert _calls(config) == []
    assert {c["status"] for c in second["components"].values()} == {"cached"}
    assert second["components"]["gamma"]["outputs"] == first["components"]["gamma"]["outputs"]
    with open(os.path.join(second["components"]["gamma"]["outputs"]["out"], "value.txt")) as f:
        assert f.read() == "alphabetagamma"


def test_changing_one_section_reruns_that_component_and_those_after_it(tmp_path):
    _run(_config(tmp_path))
    config = _config(tmp_path, tokenizer={"vocab_size": 512})
    _calls(config)
    record = _run(config)
    assert _calls(config) == ["beta", "gamma"]
    assert [c["status"] for c in record["components"].values()] == ["cached", "executed", "executed"]


def test_changing_the_last_section_reruns_only_the_last(tmp_path):
    _run(_config(tmp_path))
    config = _config(tmp_path, train={"seed": 5})
    _calls(config)
    _run(config)
    assert _calls(config) == ["gamma"]


def test_no_cache_reruns_everything_in_place(tmp_path):
    config = _config(tmp_path)
    first = _run(config)
    _calls(config)
    second = _run(config, no_cache=True)
    assert _calls(config) == ["alpha", "beta", "gamma"]
    assert second["components"]["alpha"]["outputs"] == first["components"]["alpha"]["outputs"]


def test_until_stops_and_marks_the_rest_skipped(tmp_path):
    config = _config(tmp_path)
    record = _run(config, until="beta")
    assert _calls(config) == ["alpha", "beta"]
    assert record["components"]["gamma"]["status"] == "skipped"
    assert record["status"] == "succeeded"


def test_until_a_component_the_config_switches_off_still_stops_there(tmp_path):
    config = _config(tmp_path)
    nodes = fake_components.nodes()
    nodes[1] = dataclasses.replace(nodes[1], enabled=False)  # as `tune` with tuning off
    record = run_pipeline(config, nodes=nodes, until="beta")
    assert _calls(config) == ["alpha"]
    assert [c["status"] for c in record["components"].values()] == ["executed", "skipped",
                                                                      "skipped"]
    assert record["status"] == "succeeded"


def test_until_unknown_component_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nosuch"):
        _run(_config(tmp_path), until="nosuch")


def test_failed_step_publishes_nothing_and_the_next_run_redoes_it(tmp_path):
    failing = _config(tmp_path, train={"seed": 13})
    with pytest.raises(ComponentFailed):
        _run(failing)
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    assert record["status"] == "failed"
    assert record["components"]["gamma"]["status"] == "failed"
    assert record["components"]["beta"]["status"] == "executed"
    assert record["metrics"]["train_tokens_per_second"] is None
    gamma_dir = tmp_path / "root" / "gamma"
    assert [p.name for p in gamma_dir.iterdir()] == [".staging"]
    assert list((gamma_dir / ".staging").iterdir()) == []
    _calls(failing)
    fixed = _config(tmp_path, train={"seed": 14})
    record = _run(fixed)
    assert _calls(fixed) == ["gamma"]
    assert record["status"] == "succeeded"
    assert record["metrics"]["train_tokens_per_second"] == 1.0


def test_an_interrupted_run_is_recorded_failed_and_publishes_nothing(tmp_path):
    from pipeline.core.metadata import MetadataStore

    with pytest.raises(KeyboardInterrupt):
        _run(_config(tmp_path, train={"seed": 15}))
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    assert record["status"] == "failed" and record["components"]["gamma"]["status"] == "failed"
    assert list((tmp_path / "root" / "gamma" / ".staging").iterdir()) == []
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    assert [run["status"] for run in store.runs(10)] == ["failed"]


def test_a_run_whose_process_died_is_recorded_failed_by_the_next_run(tmp_path):
    # SIGKILL leaves no chance to write anything: the next run, holding the root's lock,
    # knows that no other process is running and closes the dead run's record.
    from pipeline.core.metadata import MetadataStore

    config = _config(tmp_path)
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    store.start_run("killed", {})
    record = _run(config)
    statuses = {run["id"]: run["status"] for run in store.runs(10)}
    assert statuses == {"killed": "failed", record["run_id"]: "succeeded"}


def test_latest_run_json_has_the_contract_shape(tmp_path):
    config = _config(tmp_path)
    _run(config)
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    assert set(record) == {"run_id", "status", "components", "metrics", "pushed_model", "spans"}
    assert record["spans"] is None  # no {SPAN} in data.inputs
    assert set(record["metrics"]) == {"eval_perplexity", "eval_bits_per_byte",
                                      "eval_token_accuracy", "blessed", "train_tokens_per_second",
                                      "eval_unigram_perplexity", "golden_perplexity",
                                      "golden_bits_per_byte"}
    # No golden set configured: its metrics are null, never invented.
    assert record["metrics"]["golden_perplexity"] is None
    assert record["metrics"]["golden_bits_per_byte"] is None
    for entry in record["components"].values():
        assert set(entry) == {"status", "seconds", "outputs"}
        assert entry["seconds"] >= 0
        for uri in entry["outputs"].values():
            assert os.path.isdir(uri)
    assert record["pushed_model"] is None


def test_outputs_live_under_component_and_fingerprint(tmp_path):
    record = _run(_config(tmp_path))
    out = record["components"]["beta"]["outputs"]["out"]
    parent = os.path.dirname(out)
    assert os.path.dirname(parent) == str(tmp_path / "root" / "beta")
    assert len(os.path.basename(parent)) == 16
    assert os.path.isfile(os.path.join(parent, "lmpipe_execution.json"))


def test_a_second_run_on_a_locked_root_is_refused(tmp_path):
    config = _config(tmp_path)
    os.makedirs(config.pipeline.root)
    with RootLock(config.pipeline.root):
        with pytest.raises(LockedError, match="in use by pid"):
            _run(config)
    assert _calls(config) == []
