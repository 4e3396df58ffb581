"""ingest's input formats besides .txt and .jsonl: Parquet, CSV/TSV, TFRecord of
tf.train.Example, Arrow (a `datasets` save_to_disk directory, built here with pyarrow
alone), and BigQuery up to the request Beam's source is built with. Every file is written
by the tests; each format gives the documents the same rows give as JSONL."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.ingest import cleaning
from components.ingest.records import FileRange, RecordReader, plan_ranges, require_fields
from components.ingest.sources import match_pattern
from components.shared.example_wire import encode_example, varint
from components.shared.shards import masked_crc32c
from pipeline.core.errors import UsageError
from tests.components.data_fixtures import (TRICKY_TEXTS, data_config, read_documents,
                                            run_ingest, run_tokenizer, run_transform,
                                            tree_bytes)
from tests.conftest import run_lmpipe, write_jsonl

# Rows with what CSV must quote (delimiters, quotes, line breaks) and text tokenizers get
# wrong; `id` is an integer column/feature (CSV keeps it as text).
ROWS = [{"text": text, "domain": f"d{i % 3}", "id": i} for i, text in enumerate(
    TRICKY_TEXTS + ['a "quoted", comma, and\ttab', "two\nlines, one field",
                    *(f"document {i}: some words, and more words" for i in range(40))])]


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 16,
                  schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def tfrecord_frame(data: bytes) -> bytes:
    length = len(data).to_bytes(8, "little")
    return (length + masked_crc32c(length).to_bytes(4, "little") + data
            + masked_crc32c(data).to_bytes(4, "little"))


def write_tfrecord(path: Path, records: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    framed = b"".join(tfrecord_frame(r) for r in records)
    path.write_bytes(gzip.compress(framed, mtime=0) if path.suffix == ".gz" else framed)
    return path


def example_of(row: dict) -> bytes:
    """A row as a tf.train.Example: strings as bytes features, ints as int64 features."""
    return encode_example({k: [v] for k, v in row.items() if isinstance(v, int)},
                          {k: v for k, v in row.items() if isinstance(v, str)})


def raw_bytes_example(key: str, value: bytes) -> bytes:
    """An Example with one bytes feature holding any bytes (not only UTF-8 text)."""
    def field(number, payload):
        return varint(number << 3 | 2) + varint(len(payload)) + payload
    entry = field(1, key.encode()) + field(2, field(1, field(1, value)))
    return field(1, field(1, entry))


def write_saved_dataset(directory: Path, rows: list[dict], shards: int = 2) -> Path:
    """What `datasets.Dataset.save_to_disk` writes: Arrow IPC streams, state.json listing
    them, dataset_info.json; and a cache file beside them that is not the dataset."""
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    names, step = [], -(-len(rows) // shards)
    for shard in range(shards):
        name = f"data-{shard:05d}-of-{shards:05d}.arrow"
        with pa.ipc.new_stream(directory / name, table.schema) as writer:
            writer.write_table(table.slice(shard * step, step))
        names.append(name)
    (directory / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": n} for n in names], "_fingerprint": "0", "_split": None}))
    (directory / "dataset_info.json").write_text(json.dumps({"features": {
        "text": {"dtype": "string", "_type": "Value"}}}))
    with pa.ipc.new_stream(directory / "cache-0123.arrow", table.schema) as writer:
        writer.write_table(table.slice(0, 1))
    return directory


def write_format(root: Path, fmt: str, rows: list[dict]) -> Path:
    """`rows` written as format `fmt` below `root`; returns the input path."""
    if fmt == "parquet":
        return write_parquet(root / "rows.parquet", rows)
    if fmt == "csv":
        return write_csv(root / "rows.csv", rows)
    if fmt == "tsv.gz":
        return write_csv(root / "rows.tsv.gz", rows, delimiter="\t")
    if fmt == "tfrecord.gz":
        return write_tfrecord(root / "rows.tfrecord.gz", [example_of(r) for r in rows])
    assert fmt == "save_to_disk"
    return write_saved_dataset(root / "dataset", rows)


@pytest.fixture(scope="module")
def jsonl_documents(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("jsonl")
    write_jsonl(root / "rows.jsonl", ROWS)
    run_ingest(root, [str(root / "rows.jsonl")], root / "documents", domain_field="domain",
               eval_fraction=0.3)
    return read_documents(root / "documents")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv.gz", "tfrecord.gz", "save_to_disk"])
def test_each_format_gives_the_documents_of_the_same_rows_in_jsonl(fmt, jsonl_documents,
                                                                   tmp_path):
    path = write_format(tmp_path / "in", fmt, ROWS)
    stats = run_ingest(tmp_path, [str(path)], tmp_path / "documents", domain_field="domain",
                       eval_fraction=0.3)
    got = read_documents(tmp_path / "documents")
    expected = jsonl_documents
    if fmt in ("csv", "tsv.gz"):  # CSV has no types: the id is the text the cell holds
        expected = {split: [{**d, "meta": {"id": str(d["meta"]["id"])}} for d in docs]
                    for split, docs in expected.items()}
    assert got == expected
    assert stats["documents_read"] == len(ROWS)
    assert stats["files"]["read"] == (2 if fmt == "save_to_disk" else 1)  # no cache file
    assert stats["files"]["corrupt"] == [] and stats["files"]["empty"] == 0


def test_jsonl_and_parquet_give_byte_identical_documents_tokenizers_and_tfrecords(tmp_path):
    trees = {}
    for name, path in [("jsonl", write_jsonl(tmp_path / "j" / "rows.jsonl", ROWS)),
                       ("parquet", write_parquet(tmp_path / "p" / "rows.parquet", ROWS))]:
        out = tmp_path / f"out-{name}"
        run_ingest(out, [str(path)], out / "documents", domain_field="domain",
                   eval_fraction=0.3)
        run_tokenizer(out, out / "documents", out / "tokenizer", vocab_size=300)
        run_transform(out, out / "documents", out / "tokenizer", out / "out",
                      sequence_length=32)
        trees[name] = {part: tree_bytes(out / part) for part in ("documents", "tokenizer", "out")}
    assert any(name.endswith(".tfrecord") for name in trees["jsonl"]["out"])
    assert trees["jsonl"] == trees["parquet"]


def test_parquet_byte_ranges_read_every_row_group_exactly_once(tmp_path):
    rows = [{"text": f"row {i} " + "x" * 200} for i in range(400)]
    path = write_parquet(tmp_path / "big.parquet", rows, row_group_size=25)
    size = path.stat().st_size
    ranges = plan_ranges([(str(path), size)], "line", range_bytes=size // 5)
    assert len(ranges) >= 5
    per_range = [list(RecordReader(r, "line")) for r in ranges]
    assert sorted(row["text"] for rs in per_range for row in rs) == \
        sorted(r["text"].encode() for r in rows)
    assert sum(1 for rs in per_range if rs) >= 3  # the row groups are spread over ranges


def test_csv_reads_quotes_line_breaks_long_fields_and_counts_bad_lines(tmp_path):
    path = tmp_path / "x.csv"
    long_text = "long " * 60_000  # over csv's default field limit of 128 KiB
    path.write_bytes("\ufefftext,n\r\n".encode() + b'"a, ""b""\nc",1\r\n\r\nshort\r\n'
                     + b'"bad \xff byte",2\r\nextra,1,2\r\n' + f'"{long_text}",3\r\n'.encode())
    rows = list(RecordReader(FileRange(str(path)), "line"))
    # Cells are text, or their bytes when some are not UTF-8 (cleaning applies the policy).
    assert rows == [{"text": 'a, "b"\nc', "n": "1"}, None, {"text": b"bad \xff byte", "n": "2"},
                    None, {"text": long_text, "n": "3"}]
    cleaner = cleaning.Cleaner(data_config([str(path)]))
    reasons = [cleaner.clean(row, "csv")[1] for row in rows]
    assert reasons == [None, "malformed_record", "invalid_utf8", "malformed_record", None]


def test_a_save_to_disk_directory_is_its_listed_arrow_files(tmp_path):
    dataset = write_saved_dataset(tmp_path / "dict" / "train", ROWS, shards=3)
    write_saved_dataset(tmp_path / "dict" / "test", ROWS[:5], shards=1)
    (tmp_path / "dict" / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    matched = sorted(Path(m.path).relative_to(tmp_path).as_posix()
                     for m in match_pattern(str(tmp_path / "dict")))
    assert matched == ["dict/test/data-00000-of-00001.arrow",
                       *(f"dict/train/data-0000{i}-of-00003.arrow" for i in range(3))]
    (dataset / "data-00001-of-00003.arrow").unlink()
    with pytest.raises(UsageError, match=r"^data.inputs: .*train/state.json lists "
                                         r"data-00001-of-00003.arrow, which is missing$"):
        match_pattern(str(tmp_path / "dict"))


def test_arrow_file_format_is_read_as_the_stream_format_is(tmp_path):
    table = pa.Table.from_pylist(ROWS[:6])
    with pa.ipc.new_file(tmp_path / "rows.arrow", table.schema) as writer:
        writer.write_table(table)
    rows = list(RecordReader(FileRange(str(tmp_path / "rows.arrow")), "line"))
    assert [r["text"].decode() for r in rows] == [r["text"] for r in ROWS[:6]]


def test_hostile_rows_and_damaged_files_are_counted_and_named_never_raised(tmp_path):
    corpus = tmp_path / "corpus"
    good = [{"text": f"good document {i}", "domain": "g"} for i in range(30)]
    write_parquet(corpus / "good.parquet", good, row_group_size=10)
    damaged = corpus / "truncated.parquet"
    damaged.write_bytes((corpus / "good.parquet").read_bytes()[:-40])
    # A string column may hold invalid UTF-8 when another writer wrote it: binary here.
    write_parquet(corpus / "hostile.parquet",
                  [{"text": None, "domain": "h"}, {"text": b"bad \xff utf-8", "domain": "h"},
                   {"text": b"nul \x00 byte", "domain": "h"}, {"text": b"kept", "domain": "h"}],
                  schema=pa.schema([("text", pa.binary()), ("domain", pa.string())]))
    write_parquet(corpus / "number.parquet", [{"text": 7, "domain": "n"}])
    write_parquet(corpus / "no_rows.parquet", [],
                  schema=pa.schema([("text", pa.string()), ("domain", pa.string())]))
    (corpus / "zero_bytes.parquet").write_bytes(b"")
    records = [example_of({"text": f"record {i}", "domain": "t"}) for i in range(5)]
    framed = b"".join(tfrecord_frame(r) for r in records)
    (corpus / "cut.tfrecord").write_bytes(framed[:-10])
    (corpus / "flipped.tfrecord").write_bytes(framed[:-20] + b"X" + framed[-19:])
    write_tfrecord(corpus / "odd.tfrecord",
                   [b"\xff not an example", raw_bytes_example("text", b"a \xc3\x28 bad byte"),
                    example_of({"domain": "t", "n": 1})])
    arrow_rows = pa.Table.from_pylist([{"text": f"arrow row {i}", "domain": "a"}
                                       for i in range(4)])
    with pa.ipc.new_stream(tmp_path / "whole.arrow", arrow_rows.schema) as writer:
        writer.write_table(arrow_rows, max_chunksize=1)  # a record batch per row
    (corpus / "cut.arrow").write_bytes((tmp_path / "whole.arrow").read_bytes()[:-30])
    write_csv(corpus / "cells.csv", [{"text": "", "domain": "c"},
                                     {"text": "csv ok", "domain": "c"}])
    (corpus / "empty.csv").write_bytes(b"")

    stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", domain_field="domain",
                       eval_fraction=0.3)

    corrupt = {Path(c["path"]).name: c["error"] for c in stats["files"]["corrupt"]}
    assert sorted(corrupt) == ["cut.arrow", "cut.tfrecord", "flipped.tfrecord", "truncated.parquet"]
    assert corrupt["cut.tfrecord"] == "ValueError: truncated record at byte " + str(
        sum(len(tfrecord_frame(r)) for r in records[:4]))
    assert "checksum mismatch" in corrupt["flipped.tfrecord"]
    assert stats["files"]["empty"] == 3  # no_rows.parquet, zero_bytes.parquet, empty.csv
    dropped = {k: v for k, v in stats["dropped"].items() if v}
    # cut.tfrecord's and flipped.tfrecord's first four records are the same documents.
    assert dropped == {"text_not_string": 2, "invalid_utf8": 2, "binary": 1, "empty": 1,
                       "malformed_record": 1, "missing_text_field": 1, "duplicate": 4}
    texts = sorted(d["text"] for docs in read_documents(tmp_path / "documents").values()
                   for d in docs)
    # Before the damage: 4 of cut.tfrecord's 5 records, 3 of cut.arrow's 4 record batches.
    expected = ([g["text"] for g in good] + ["kept", "csv ok"]
                + [f"record {i}" for i in range(4)] + [f"arrow row {i}" for i in range(3)])
    assert texts == sorted(expected)


@pytest.mark.parametrize("name, write, message", [
    ("rows.parquet", lambda p: write_parquet(p, [{"body": "x", "lang": "en"}]),
     "has no column 'text'; its columns: body, lang"),
    ("rows.csv", lambda p: write_csv(p, [{"body": "x", "lang": "en"}]),
     "has no column 'text'; its columns: body, lang"),
    ("rows.tfrecord", lambda p: write_tfrecord(p, [example_of({"body": "x", "lang": "en"})]),
     "has no column 'text'; its columns: body, lang"),
])
def test_a_missing_named_column_is_one_usage_error_naming_the_file(name, write, message,
                                                                   tmp_path):
    path = write(tmp_path / name)
    with pytest.raises(UsageError) as raised:
        run_ingest(tmp_path, [str(path)], tmp_path / "documents")
    assert str(raised.value) == f"data.text_field: {path} (from data.inputs) {message}"
    parquet = write_parquet(tmp_path / "t.parquet", [{"text": "x", "lang": "en"}])
    with pytest.raises(UsageError, match=r"^data.domain_field: .*t.parquet \(from "
                                         r"evaluation.golden_inputs\) has no column 'domain'"):
        require_fields([str(parquet)], data_config(["x"], domain_field="domain"),
                       "evaluation.golden_inputs")


def test_cli_missing_column_exits_2_with_one_line(tiny_config_file, tmp_path):
    path = write_parquet(tmp_path / "rows.parquet", [{"body": "x"}])
    failed = run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                        "--set", f"data.inputs=['{path}']")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"lmpipe: error: ingest: data.text_field: {path} (from data.inputs) has no column "
        f"'text'; its columns: body")
    assert "Traceback" not in failed.stderr


def test_a_golden_set_in_parquet_keeps_its_documents_out_of_a_jsonl_corpus(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", ROWS)
    golden = write_parquet(tmp_path / "golden.parquet", ROWS[:5])
    stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", golden=[str(golden)],
                       domain_field="domain", eval_fraction=0.3)
    assert stats["dropped"]["golden"] == 5
    golden_stats = json.loads((tmp_path / "documents-golden" / "stats.json").read_text())
    assert golden_stats["documents_kept"] == 5


def test_shards_follow_the_cleaned_text_so_every_format_shards_alike(tmp_path, monkeypatch):
    import math

    from components.shared import shards

    # One shard per 500 bytes of text (64 MB in use) gives several shards to compare.
    monkeypatch.setattr(shards, "num_shards_for", lambda num_bytes: max(1, math.ceil(
        num_bytes / 500)))
    jsonl = write_jsonl(tmp_path / "in" / "rows.jsonl", ROWS)
    zipped = tmp_path / "in" / "rows.jsonl.gz"
    zipped.write_bytes(gzip.compress(jsonl.read_bytes()))
    inputs = {"jsonl": jsonl, "gz": zipped,
              "parquet": write_parquet(tmp_path / "rows.parquet", ROWS),
              "tfrecord": write_tfrecord(tmp_path / "rows.tfrecord",
                                         [example_of(r) for r in ROWS])}
    trees = {}
    for name, path in inputs.items():
        run_ingest(tmp_path, [str(path)], tmp_path / name, domain_field="domain",
                   eval_fraction=0.3)
        trees[name] = tree_bytes(tmp_path / name)
    assert len([n for n in trees["jsonl"] if n.startswith("train-")]) > 2
    assert trees["jsonl"] == trees["gz"] == trees["parquet"] == trees["tfrecord"]


def test_every_format_reads_from_a_non_local_filesystem_as_from_disk(tmp_path):
    """On `ram://` (Beam's FileSystems over TensorFlow's in-memory files, neither a local
    path nor open()-able, as gs:// is not) each format gives the local run's documents."""
    import tensorflow as tf

    from tests.components.data_fixtures import ram_filesystem

    ram_filesystem()
    local = tmp_path / "local"
    for fmt in ("parquet", "csv", "tfrecord.gz", "save_to_disk"):
        write_format(local, fmt, ROWS)
    remote = f"ram://{tmp_path.name}"
    for path in sorted(local.rglob("*")):
        if path.is_file():
            with tf.io.gfile.GFile(f"{remote}/{path.relative_to(local).as_posix()}", "wb") as f:
                f.write(path.read_bytes())
    trees = {}
    for name, root in (("local", str(local)), ("remote", remote)):
        inputs = [f"{root}/rows.parquet", f"{root}/rows.csv", f"{root}/rows.tfrecord.gz",
                  f"{root}/dataset"]
        stats = run_ingest(tmp_path, inputs, tmp_path / name, domain_field="domain",
                           eval_fraction=0.3)
        assert stats["files"]["read"] == 5 and stats["documents_read"] == 4 * len(ROWS)
        trees[name] = read_documents(tmp_path / name)
    assert trees["remote"] == trees["local"]
