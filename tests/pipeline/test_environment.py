"""The machine in the way of a run: a directory where the root's lock file or metadata store
belongs, an emptied store, a full disk at the start, at the end and inside a Beam step.
Each is one line on stderr naming the path, with exit status 2 (1 for a failed step), and
the run is recorded as far as the disk allows."""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys

import pytest
import yaml

from pipeline import local_runner
from pipeline.cli import step_error
from pipeline.core.errors import UsageError
from pipeline.core.metadata import MetadataStore
from pipeline.local_runner import ComponentFailed, run_pipeline
from tests.conftest import REPO, build_config, run_lmpipe, tiny_raw_config
from tests.pipeline import fake_components


def _one_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _run_cli(tmp_path, tiny_corpus, *extra: str, module: str = "pipeline.cli", **popen):
    """`lmpipe run --until ingest` on the tiny config, in a fresh process."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(tiny_raw_config(tmp_path, tiny_corpus)))
    return subprocess.run([sys.executable, "-m", module, "run", "--config", str(config),
                           "--until", "ingest", *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
                          **popen)


# --- the root's lock file and metadata store ---

def _lock_is_a_directory(root):
    (root / ".lmpipe.lock").mkdir()
    return root / ".lmpipe.lock", "cannot use the root's lock file (Is a directory)"


def _lock_on_a_full_disk(root):
    # Writes to /dev/full fail as on a full disk (ENOSPC): the lock file's holder line.
    (root / ".lmpipe.lock").symlink_to("/dev/full")
    return root / ".lmpipe.lock", "cannot use the root's lock file (No space left on device)"


def _store_is_a_directory(root):
    (root / "metadata.sqlite").mkdir()
    return root / "metadata.sqlite", ("not a readable lmpipe metadata store (a directory); "
                                      "move it aside to start a new history")


@pytest.mark.parametrize("obstacle", [_lock_is_a_directory, _lock_on_a_full_disk,
                                      _store_is_a_directory],
                         ids=["lock-directory", "lock-full-disk", "store-directory"])
def test_a_lock_or_store_that_cannot_be_used_is_one_line_before_any_step(tmp_path, tiny_corpus,
                                                                        obstacle):
    root = tmp_path / "root"
    root.mkdir()
    path, reason = obstacle(root)
    line = _one_line(_run_cli(tmp_path, tiny_corpus))
    assert line == f"lmpipe: error: {path}: {reason}"
    assert not (root / "ingest").exists() and not (root / "latest_run.json").exists()


@pytest.mark.parametrize("command", ["run", "runs"])
def test_an_emptied_store_is_refused_not_silently_made_new(tmp_path, tiny_corpus, command):
    store = tmp_path / "root" / "metadata.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"")  # a history cut to nothing (a full disk, `> metadata.sqlite`)
    result = (_run_cli(tmp_path, tiny_corpus) if command == "run"
              else run_lmpipe("runs", "--root", store.parent))
    assert _one_line(result) == (f"lmpipe: error: {store}: not a readable lmpipe metadata "
                                 f"store (an empty file, 0 bytes); move it aside to start a "
                                 f"new history")
    assert store.read_bytes() == b""


def test_a_store_that_cannot_be_created_leaves_no_empty_store_behind(tmp_path, tiny_corpus):
    result = _run_cli(tmp_path, tiny_corpus, module="tests.pipeline.sqlite_full")
    store = tmp_path / "root" / "metadata.sqlite"
    assert _one_line(result) == (f"lmpipe: error: {store}: cannot create the metadata store "
                                 f"(database or disk is full)")
    # A 0-byte store would be refused by every later run once the disk has room again.
    assert sorted(p.name for p in store.parent.iterdir()) == [".lmpipe.lock"]
    assert _one_line(run_lmpipe("runs", "--root", store.parent)).endswith(
        f"no pipeline runs recorded here ({store} missing)")


def test_a_full_store_at_the_start_of_a_run_is_one_line_and_keeps_the_history(tmp_path,
                                                                             tiny_corpus):
    store = tmp_path / "root" / "metadata.sqlite"
    earlier = MetadataStore(str(store))
    earlier.start_run("earlier", {})
    earlier.finish_run("earlier", "succeeded", {})
    earlier.close()
    # A config record larger than a page: the new run's row needs a page the disk lacks.
    result = _run_cli(tmp_path, tiny_corpus, "--set", "data.split_salt=" + "s" * 8000,
                      module="tests.pipeline.sqlite_full")
    assert _one_line(result) == (f"lmpipe: error: {store}: cannot write the metadata store "
                                 f"(database or disk is full)")
    rows = sqlite3.connect(store).execute("SELECT id, status FROM runs").fetchall()
    assert rows == [("earlier", "succeeded")]
    assert not (store.parent / "ingest").exists()


# --- the end of a run, and a step's own log ---

def _config(tmp_path, seed: int):
    return build_config({"pipeline": {"root": str(tmp_path / "root")},
                         "data": {"inputs": ["unused"]}, "train": {"seed": seed}})


def _full_at_latest_run(path, data):
    if os.path.basename(path) == "latest_run.json":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    raise AssertionError(f"only latest_run.json is written here, not {path}")


@pytest.mark.parametrize("seed, status", [(0, "succeeded"), (13, "failed")])
def test_a_full_disk_at_latest_run_json_still_records_the_run_in_the_store(tmp_path, monkeypatch,
                                                                          seed, status):
    root = tmp_path / "root"
    run_pipeline(_config(tmp_path, seed=1), nodes=fake_components.nodes())  # an earlier summary
    # A full disk cannot be made here without root privileges: the write fails as on one.
    monkeypatch.setattr(local_runner, "write_json_atomic", _full_at_latest_run)
    with pytest.raises(UsageError if status == "succeeded" else ComponentFailed) as info:
        run_pipeline(_config(tmp_path, seed=seed), nodes=fake_components.nodes())

    store = MetadataStore(str(root / "metadata.sqlite"))
    newest = store.runs(1)[0]
    store.close()
    assert newest["status"] == status and newest["finished"] is not None
    assert json.loads(newest["summary"])["components"]["gamma"]["status"] == (
        "executed" if status == "succeeded" else "failed")
    # The earlier run's summary, left in place, would pass for this run's.
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("latest_run")) == []
    if status == "succeeded":
        assert str(info.value) == (f"{root / 'latest_run.json'}: cannot write (No space left "
                                   f"on device); the run is recorded succeeded in "
                                   f"{root / 'metadata.sqlite'}")
    else:  # the step's own error is the one reported
        assert str(info.value.cause) == "gamma failed half-way"


def test_a_failed_step_whose_log_cannot_be_kept_is_still_its_own_error(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "logs").write_text("a file where the log directory belongs")
    with pytest.raises(ComponentFailed) as info:
        run_pipeline(_config(tmp_path, seed=13), nodes=fake_components.nodes())
    assert str(info.value.cause) == "gamma failed half-way"
    assert not hasattr(info.value.cause, "log_path")
    record = json.loads((root / "latest_run.json").read_text())
    assert (record["status"], record["components"]["gamma"]["status"]) == ("failed", "failed")


def _random_corpus(path) -> None:
    """About 850 kB of JSONL that gzip cannot shrink much."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(3000):
            words = ("".join(rng.choices(letters, k=8)) for _ in range(30))
            f.write(json.dumps({"text": " ".join(words)}) + "\n")


def _file_size_limit():
    """In the child: files may not grow past 100 kB, and a write past it fails with EFBIG
    instead of killing the process (SIGXFSZ ignored): a real OSError inside ingest's Beam
    transform that writes the shards."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_a_failing_beam_step_is_one_line_and_beam_s_log_goes_to_the_step_log(tmp_path,
                                                                             tiny_corpus, mode):
    big = tmp_path / "big"
    big.mkdir()
    _random_corpus(big / "a.jsonl")
    result = _run_cli(tmp_path, big, "--set",
                      f"pipeline.beam_args=[--direct_running_mode={mode}, --direct_num_workers=2]",
                      preexec_fn=_file_size_limit)
    assert result.returncode == 1, result.stderr[-3000:]
    log = next((tmp_path / "root" / "logs").iterdir())
    assert result.stderr.endswith(
        f"\nlmpipe: error: ingest failed: RuntimeError: OSError: [Errno 27] File too large "
        f"[while running 'WriteShards'] (traceback in {log})\n")
    assert "ERROR apache_beam" not in result.stderr
    if mode == "in_memory":
        # Nothing but the progress and the one line. (A multi-process worker prints the
        # traceback to its own stderr itself, which lmpipe's process does not control.)
        *progress, _ = result.stderr.strip().splitlines()
        assert all(p.startswith("[ingest] ") for p in progress), result.stderr
    text = log.read_text()
    # What Beam logged first, then lmpipe's traceback of the error it re-raised.
    assert text.index(" ERROR apache_beam.runners.") < text.index("RuntimeError: OSError: [Errno 27]")
    assert text.count("Traceback (most recent call last)") >= 2


@pytest.mark.parametrize("message, line", [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nRuntimeError: "
     "OSError: full [while running 'WriteShards']\n", "RuntimeError: OSError: full [while "
                                                       "running 'WriteShards']"),
    ("Unsuccessful TensorSliceReader constructor\n You may be trying to load on a different "
     "device", "RuntimeError: Unsuccessful TensorSliceReader constructor"),
    ("", "RuntimeError"),
])
def test_a_step_error_is_one_line(message, line):
    assert step_error(RuntimeError(message)) == line
