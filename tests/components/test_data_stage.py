"""The data stage end to end: `lmpipe run --until transform` on a clean and on a hostile
corpus, clear errors for a missing input and for a corpus with nothing left,
byte-identical artifacts across reruns and across Beam running modes, and the whole stage
on a non-local filesystem."""

from __future__ import annotations

import gzip
import json

import pytest

from components.ingest import cleaning
from tests.components.data_fixtures import (ram_files, ram_filesystem, run_ingest, run_tokenizer,
                                            run_transform, runtime, tree_bytes)
from tests.conftest import REPO, run_lmpipe, tiny_documents, write_jsonl

TEN_MB = 10 * 2**20


def _record(tmp_path) -> dict:
    return json.loads((tmp_path / "root" / "latest_run.json").read_text())


def test_cli_runs_the_data_stage_and_reports_a_missing_input(tiny_config_file, tmp_path):
    done = run_lmpipe("run", "--config", tiny_config_file, "--until", "transform")
    assert done.returncode == 0, done.stderr
    record = _record(tmp_path)
    assert [record["components"][n]["status"] for n in ("ingest", "tokenizer", "transform")] == [
        "executed"] * 3
    examples = record["components"]["transform"]["outputs"]["examples"]
    assert json.loads((REPO / examples / "feature_spec.json").read_text())["splits"]["train"][
        "examples"] > 0
    published = _published(tmp_path)
    missing = tmp_path / "absent" / "*.jsonl"
    failed = run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                        "--set", f"data.inputs=['{missing}']")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"lmpipe: error: ingest: data.inputs: {missing} matches no files")
    assert "Traceback" not in failed.stderr
    assert _published(tmp_path) == published


def test_cli_golden_pattern_matching_nothing_is_one_line_exit_2(tiny_config_file, tmp_path):
    missing = tmp_path / "absent" / "golden*.jsonl"
    failed = run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                        "--set", f"evaluation.golden_inputs=['{missing}']")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"lmpipe: error: ingest: evaluation.golden_inputs: {missing} matches no files")
    assert "Traceback" not in failed.stderr
    assert _published(tmp_path) == []


def _published(tmp_path) -> list[str]:
    """The completed (published) executions under the pipeline root."""
    return sorted(str(p) for p in (tmp_path / "root").glob("*/*/lmpipe_execution.json"))


def _long_line() -> str:
    return "Return the square root of x. " * (TEN_MB // 29 + 1)


def _hostile_corpus(directory):
    write_jsonl(directory / "good.jsonl", tiny_documents())
    (directory / "empty.jsonl").write_bytes(b"")
    (directory / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (directory / "one_line.txt").write_text(_long_line()[:TEN_MB] + "\n")
    (directory / "malformed.jsonl").write_text("\n".join([
        '{"text": "a good line among bad ones", "domain": 5}', '{bad json', '{"body": "x"}',
        '{"text": 42}', '{"text": null}', '{"text": ["a"]}', '[1, 2]', "[" * 10**5 + "]" * 10**5,
        r'{"text": "a lone \ud800 surrogate"}']) + "\n")
    (directory / "crlf.txt").write_bytes(b"first line\r\nsecond line  \r\n\r\nthird line\r\n")
    (directory / "latin1.txt").write_bytes(b"caf\xe9 in latin-1\n")
    payload = gzip.compress(b"".join(b'{"text": "zipped line %d"}\n' % i for i in range(5000)))
    (directory / "corrupt.jsonl.gz").write_bytes(payload[:len(payload) // 2])


def test_hostile_input_is_counted_by_reason_and_never_crashes(tiny_config_file, tmp_path):
    corpus = tmp_path / "hostile"
    corpus.mkdir()
    _hostile_corpus(corpus)
    done = run_lmpipe("run", "--config", tiny_config_file, "--until", "transform",
                      "--set", f"data.inputs=['{corpus}']",
                      "--set", "tokenizer.sample_bytes=100000")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"corrupt file {corpus / 'corrupt.jsonl.gz'}" in done.stderr
    outputs = _record(tmp_path)["components"]["transform"]["outputs"]
    stats = json.loads((REPO / outputs["statistics"] / "stats.json").read_text())
    ingest = stats["ingest"]
    assert ingest["files"]["read"] == 8 and ingest["files"]["empty"] == 1
    assert [c["path"] for c in ingest["files"]["corrupt"]] == [str(corpus / "corrupt.jsonl.gz")]
    # The binary file is skipped whole, none of its lines read.
    assert ingest["files"]["skipped"] == [{"path": str(corpus / "binary.txt"), "reason": "binary"}]
    assert f"skipped binary file {corpus / 'binary.txt'}" in done.stderr
    dropped = ingest["dropped"]
    assert (dropped["binary"], dropped["malformed_json"], dropped["missing_text_field"],
            dropped["text_not_string"], dropped["not_an_object"], dropped["invalid_utf8"],
            dropped["empty"]) == (0, 2, 1, 3, 1, 2, 1)
    assert ingest["long_documents_split"] == 1
    # What the corrupt file gave before the damage: the rest of the records read.
    zipped = ingest["documents_read"] - (240 + 1 + 9 + 4 + 1)
    assert 0 < zipped < 5000
    long_text = _long_line()[:TEN_MB].rstrip()
    kept = ([d["text"] for d in tiny_documents()] + ["a good line among bad ones", "first line",
            "second line", "third line"] + [f"zipped line {i}" for i in range(zipped)])
    pieces = len(cleaning.split_long(long_text, 1_000_000))
    total = stats["total"]
    assert pieces == 11 and total["documents"] == len(kept) + pieces
    assert total["bytes"] == sum(len(t.encode()) for t in kept) + len(long_text)
    assert total["packing_efficiency"] > 0.99


def test_nothing_left_after_cleaning_is_one_line_and_nothing_is_published(tiny_config_file,
                                                                          tmp_path):
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    failed = run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                        "--set", f"data.inputs=['{binary}']")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith(
        "lmpipe: error: ingest: data.inputs: no documents left after cleaning (0 read; "
        "dropped: none; files skipped: binary=1)")
    assert "Traceback" not in failed.stderr
    assert _published(tmp_path) == []


@pytest.mark.slow
def test_data_stage_is_byte_identical_across_runs_and_running_modes(tiny_corpus, tmp_path):
    modes = {"first": ("--direct_running_mode=in_memory",),
             "second": ("--direct_running_mode=in_memory",),
             "processes": ("--direct_running_mode=multi_processing", "--direct_num_workers=2")}
    trees = {}
    for name, beam_args in modes.items():
        out = tmp_path / name
        run_ingest(out, [str(tiny_corpus)], out / "documents", beam_args=beam_args,
                   domain_field="domain", eval_fraction=0.2)
        run_tokenizer(out, out / "documents", out / "tokenizer", vocab_size=300)
        run_transform(out, out / "documents", out / "tokenizer", out / "out",
                      beam_args=beam_args, sequence_length=32)
        trees[name] = {part: tree_bytes(out / part) for part in ("documents", "tokenizer", "out")}
    assert trees["first"] == trees["second"] == trees["processes"]
    # 2 train shards (the second for the leftovers), 1 eval, the spec, stats.json, 2 PNGs.
    assert len(trees["first"]["out"]) == 7


def _run_stage(tmp_path, inputs: list[str], directories: dict[str, str]) -> None:
    """ingest, tokenizer and transform on string paths (local or a URL)."""
    from types import SimpleNamespace

    from components import ingest, tokenizer, transform
    from pipeline.core.artifacts import Artifact
    from pipeline.core.config import TaskConfig, TokenizerConfig, TransformConfig
    from tests.components.data_fixtures import data_config

    data = data_config(inputs, domain_field="domain", eval_fraction=0.2)
    raw = ingest.resolve_raw(SimpleNamespace(data=data), {})
    run = runtime(tmp_path)
    ingest.run({"raw": raw}, {name: directories[name] for name in ("documents", "golden")},
               run, data)
    documents = Artifact("Documents", directories["documents"], "d")
    tokenizer.run({"documents": documents}, {"tokenizer": directories["tokenizer"]}, run,
                  TokenizerConfig(vocab_size=300))
    transform.run({"documents": documents,
                   "tokenizer": Artifact("Tokenizer", directories["tokenizer"], "t")},
                  {name: directories[name] for name in ("examples", "statistics")}, run,
                  data=data, transform=TransformConfig(sequence_length=32, gzip=True),
                  task=TaskConfig())


def _gfile_tree(root: str) -> dict[str, bytes]:
    import tensorflow as tf

    tree = {}
    for path in ram_files(root):
        with tf.io.gfile.GFile(path, "rb") as f:
            tree[path[len(root) + 1:]] = f.read()
    return tree


def test_data_stage_on_a_non_local_filesystem_matches_a_local_run(tmp_path):
    """Every path of the stage goes through Beam's FileSystems or tf.io.gfile: run on
    `ram://` (neither a local path nor open()-able), it writes exactly the local bytes."""
    import tensorflow as tf

    from tests.examples_reader import read_examples

    ram_filesystem()
    documents = tiny_documents()
    plain = "\n".join(json.dumps(d) for d in documents[:150]) + "\n"
    zipped = gzip.compress(("\n".join(json.dumps(d) for d in documents[150:]) + "\n").encode(),
                           mtime=0)
    local, remote = tmp_path / "corpus", f"ram://{tmp_path.name}"
    local.mkdir()
    (local / "a.jsonl").write_text(plain)
    (local / "b.jsonl.gz").write_bytes(zipped)
    for name, content in (("a.jsonl", plain.encode()), ("b.jsonl.gz", zipped)):
        with tf.io.gfile.GFile(f"{remote}/corpus/{name}", "wb") as f:
            f.write(content)
    parts = ("documents", "golden", "tokenizer", "examples", "statistics")
    for part in parts:
        (tmp_path / "local" / part).mkdir(parents=True)
    _run_stage(tmp_path, [str(local / "*.jsonl*")],
               {part: str(tmp_path / "local" / part) for part in parts})
    _run_stage(tmp_path, [f"{remote}/corpus/*.jsonl*"],
               {part: f"{remote}/out/{part}" for part in parts})

    written = _gfile_tree(f"{remote}/out")
    assert written == tree_bytes(tmp_path / "local")
    assert {"documents/stats.json", "tokenizer/spm.model", "examples/feature_spec.json",
            "statistics/length_histogram.png"} <= set(written)
    stats = json.loads(written["statistics/stats.json"])
    assert stats["total"]["documents"] == stats["ingest"]["documents_kept"] == len(documents)
    tokens = sum(int((example["segment_ids"].numpy() != 0).sum())
                 for split in ("train", "eval")
                 for example in read_examples(f"{remote}/out/examples", split))
    assert tokens == stats["total"]["tokens"] > 0
