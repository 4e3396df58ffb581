"""ingest on hostile input: lines that used to crash the run (deep nesting, lone
surrogates), non-finite numbers and non-string domains, binary and non-UTF-8 files
skipped whole, and the errors for an empty directory and a wrong `data.text_field`."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import sys
from pathlib import Path

import pytest

from components.ingest import cleaning
from components.shared import text_cleaning
from components.ingest.records import FileRange, RecordReader, plan_ranges
from components.ingest.sources import resolve_raw_files
from pipeline.core.errors import UsageError
from tests.components.data_fixtures import (BEAM_ARGS, TRICKY_TEXTS, data_config, read_documents,
                                            run_ingest, tree_bytes)
from tests.conftest import REPO, run_lmpipe, tiny_documents, write_jsonl

DEEP_ARRAY = "[" * 200_000 + "]" * 200_000
# JSON escapes of lone surrogates: valid JSON, but no UTF-8 encoding exists for them.
SURROGATE_LINES = [
    r'{"text": "lone \ud800 surrogate in the text"}',
    r'{"text": "a surrogate in the domain", "domain": "d\udfff"}',
    r'{"text": "a surrogate in a metadata value", "note": "x\udc80"}',
    r'{"text": "a surrogate in a metadata key", "k\ud83d": 1}',
]
NON_FINITE_LINES = [
    '{"text": "NaN in an extra field", "x": NaN, "y": 2}',
    '{"text": "Infinity in an extra field", "x": -Infinity}',
    '{"text": "an overflowing number", "x": 1e999}',
]
# (domain value, the domain ingest keeps, whether it counts as `domain_invalid`)
DOMAINS = [({"a": 1}, "", True), ([1, 2], "", True), (True, "true", False),
           (1.5, "1.5", False), (7, "7", False), (None, "", False), ("ok", "ok", False)]


def _write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _clean(raw: bytes, fmt: str = "jsonl", **fields):
    return cleaning.Cleaner(data_config(["x"], domain_field="domain", **fields)).clean(raw, fmt)


def _strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as strict JSON parsers do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _output_lines(documents: Path) -> list[str]:
    """Every line of every documents shard, decoded as strict UTF-8."""
    lines = []
    for shard in sorted(documents.glob("*.jsonl.gz")):
        lines.extend(gzip.decompress(shard.read_bytes()).decode("utf-8").splitlines())
    return lines


# --- single records ---

@pytest.mark.parametrize("line", [DEEP_ARRAY, '{"text": "deep", "x": ' + DEEP_ARRAY + "}",
                                  "{" + '"a":{' * 100_000,
                                  '{"text": "huge", "n": ' + "9" * 5000 + "}"])
def test_json_python_cannot_parse_is_malformed_not_a_crash(line):
    document, reason, _ = _clean(line.encode())
    assert document is None and reason == "malformed_json"


@pytest.mark.parametrize("line", SURROGATE_LINES)
def test_lone_surrogates_follow_the_invalid_utf8_policy(line):
    document, reason, changes = _clean(line.encode())
    assert document is None and reason == "invalid_utf8"

    document, reason, changes = _clean(line.encode(), invalid_utf8="replace")
    assert reason is None and changes == ["invalid_utf8_replaced"]
    assert document == _expected_replaced(line)
    cleaning.encode_document(document).encode("utf-8")  # strict UTF-8: no surrogate left


def _expected_replaced(line: str) -> dict:
    """The document a surrogate line gives under `replace`, built independently."""
    record = json.loads(re.sub(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}", r"\\ufffd", line))
    text = record.pop("text")
    domain = record.pop("domain", "")
    return {"text": text, "domain": domain, "meta": record}


def test_valid_surrogate_pairs_are_text_not_damage():
    line = rb'{"text": "emoji \ud83e\udd16 ok", "domain": "\ud83c\udf89"}'
    document, reason, changes = _clean(line)
    assert reason is None and changes == []
    assert document == {"text": "emoji \U0001f916 ok", "domain": "\U0001f389", "meta": {}}


def test_txt_input_cannot_carry_surrogates():
    # UTF-8-encoded surrogates (ED A0 80) are invalid UTF-8 for Python's decoder too.
    line = b"an encoded lone \xed\xa0\x80 surrogate in a line of text"
    document, reason, _ = _clean(line, "txt")
    assert document is None and reason == "invalid_utf8"
    document, reason, changes = _clean(line, "txt", invalid_utf8="replace")
    assert document["text"] == "an encoded lone \ufffd\ufffd\ufffd surrogate in a line of text"
    assert changes == ["invalid_utf8_replaced"]
    cleaning.encode_document(document).encode("utf-8")


@pytest.mark.parametrize("line", NON_FINITE_LINES)
def test_non_finite_numbers_are_removed_from_meta_and_counted(line):
    document, reason, changes = _clean(line.encode())
    assert reason is None and changes == ["non_finite_removed"]
    assert "x" not in document["meta"]
    assert document["meta"] == ({"y": 2} if '"y"' in line else {})
    _strict_json(cleaning.encode_document(document))


@pytest.mark.parametrize("value, domain, invalid", DOMAINS)
def test_a_domain_that_is_not_a_scalar_is_missing_and_counted(value, domain, invalid):
    document, reason, changes = _clean(json.dumps({"text": "t", "domain": value}).encode())
    assert reason is None and document["domain"] == domain
    assert changes == (["domain_invalid"] if invalid else [])
    assert "domain" not in document["meta"]


def test_documents_are_always_encoded_as_strict_json():
    with pytest.raises(ValueError):
        cleaning.encode_document({"text": "t", "domain": "", "meta": {"x": float("nan")}})


# --- binary and non-UTF-8 files ---

# UTF-8 text of several scripts, CJK and emoji: never to be skipped as a file.
UTF8_TEXT = ("\n".join(TRICKY_TEXTS * 60) + "\n").encode("utf-8")


@pytest.mark.parametrize("head, reason", [
    (b"plain text\n" * 2000, None),
    (UTF8_TEXT, None),
    ("café naïve à la française\n".encode("latin-1") * 400, None),  # a few bad bytes: lines
    (b"", None),
    (b"text with one NUL \x00 byte" * 10, "binary"),
    (random.Random(0).randbytes(4096), "binary"),
    ("Привет, мир! Это текст.\n".encode("cp1251") * 400, "not_utf8"),
    ("日本語のテキストです。\n".encode("shift_jis") * 400, "not_utf8"),
    ("\ufeffUTF-16 text\n".encode("utf-16-le") * 100, "not_utf8"),
    (random.Random(1).randbytes(20000).replace(b"\x00", b""), "not_utf8"),
])
def test_file_skip_reason_from_the_first_block(head, reason):
    assert cleaning.file_skip_reason(head) == reason


def test_a_character_cut_at_the_end_of_the_first_block_is_not_damage():
    head = b"x" * (cleaning.SNIFF_BYTES - 2) + "\U0001f916".encode() * 10
    assert cleaning.file_skip_reason(head) is None
    assert cleaning.file_skip_reason(head[:cleaning.SNIFF_BYTES]) is None


def test_every_byte_range_of_a_file_makes_the_files_decision(tmp_path):
    text = "".join(f"line {i} of clean text\n" for i in range(3000)).encode()
    binary = _write(tmp_path / "binary.txt", b"header\x00\n" + text)
    late_nul = _write(tmp_path / "late.txt", text + b"a NUL \x00 late\n" + text)
    for path, skipped in ((binary, "binary"), (late_nul, None)):
        size = path.stat().st_size
        ranges = plan_ranges([(str(path), size)], "line", range_bytes=10_000)
        assert len(ranges) > 5
        readers = [RecordReader(file_range, "line") for file_range in ranges]
        records = [record for reader in readers for record in reader]
        assert {reader.skipped for reader in readers} == {skipped}
        if skipped:
            assert records == []
        else:
            assert records == path.read_bytes().splitlines()


def test_compressed_binary_is_sniffed_after_decompression(tmp_path):
    path = _write(tmp_path / "a.txt.gz", gzip.compress(random.Random(2).randbytes(50_000)))
    reader = RecordReader(FileRange(str(path)), "line")
    assert list(reader) == [] and reader.skipped == "binary" and reader.error is None
    text = _write(tmp_path / "b.jsonl.gz", gzip.compress(b'{"text": "t"}\n' * 10))
    reader = RecordReader(FileRange(str(text)), "line")
    assert list(reader) == [b'{"text": "t"}'] * 10 and reader.skipped is None


# --- the Beam run ---

def _hostile_corpus(corpus: Path) -> list[str]:
    """Good records among hostile lines and files; returns the texts ingest must keep."""
    good = tiny_documents(copies=2)
    lines = [json.dumps(d) for d in good[:12]] + [
        DEEP_ARRAY, *SURROGATE_LINES, *NON_FINITE_LINES,
        *(json.dumps({"text": f"domain {value!r}", "domain": value}) for value, _, _ in DOMAINS),
    ] + [json.dumps(d) for d in good[12:]]
    _write(corpus / "mixed.jsonl", "\n".join(lines) + "\n")
    scripts = "\n".join(TRICKY_TEXTS).split("\n")
    _write(corpus / "scripts.txt", "\n".join(scripts) + "\n")
    _write(corpus / "ls.txt", Path(sys.executable).resolve().read_bytes())
    _write(corpus / "rand.txt", random.Random(3).randbytes(300_000))
    _write(corpus / "rand.jsonl.gz", gzip.compress(random.Random(4).randbytes(100_000)))
    _write(corpus / "russian.txt", "Привет, мир! Это текст.\n".encode("cp1251") * 50)
    texts = [d["text"] for d in good] + [line for line in scripts if line.strip()]
    texts += ["NaN in an extra field", "Infinity in an extra field", "an overflowing number"]
    texts += [f"domain {value!r}" for value, _, _ in DOMAINS]
    return texts


@pytest.mark.parametrize("policy", ["drop", "replace"])
def test_hostile_corpus_is_counted_by_reason_and_keeps_every_good_document(tmp_path, policy):
    corpus = tmp_path / "corpus"
    expected = _hostile_corpus(corpus)
    documents = tmp_path / "documents"
    stats = run_ingest(tmp_path, [str(corpus)], documents, domain_field="domain",
                       eval_fraction=0.3, invalid_utf8=policy, whitespace="keep")

    skipped = [(str(corpus / name), reason) for name, reason in (
        ("ls.txt", "binary"), ("rand.jsonl.gz", "binary"), ("rand.txt", "binary"),
        ("russian.txt", "not_utf8"))]
    assert stats["files"]["read"] == 6 and stats["files"]["empty"] == 0
    assert stats["files"]["binary"] == 3 and stats["files"]["not_utf8"] == 1
    assert [(s["path"], s["reason"]) for s in stats["files"]["skipped"]] == skipped
    # Skipped files give no records: only the two text files are read.
    scripts = "\n".join(TRICKY_TEXTS).split("\n")
    assert stats["documents_read"] == 24 + 1 + 4 + 3 + len(DOMAINS) + len(scripts)
    assert stats["dropped"]["malformed_json"] == 1 and stats["dropped"]["empty"] == 1
    assert stats["dropped"]["binary"] == 0
    assert stats["dropped"]["invalid_utf8"] == (4 if policy == "drop" else 0)
    assert stats["changed"]["invalid_utf8_replaced"] == (4 if policy == "replace" else 0)
    assert stats["changed"]["non_finite_removed"] == 3
    assert stats["changed"]["domain_invalid"] == 2

    kept = [d for docs in read_documents(documents).values() for d in docs]
    texts = [d["text"] for d in kept]
    if policy == "replace":
        expected += [_expected_replaced(line)["text"] for line in SURROGATE_LINES]
    assert sorted(texts) == sorted(text_cleaning.normalize_unicode(t, "NFC") for t in expected)
    by_text = {d["text"]: d for d in kept}
    assert by_text["NaN in an extra field"]["meta"] == {"y": 2}
    assert by_text["domain {'a': 1}"]["domain"] == "" and by_text["domain 7"]["domain"] == "7"
    domains = {domain for split in stats["splits"].values() for domain in split["domains"]}
    assert domains == {"", "ok", "7", "true", "1.5", "math", "os", "json"} | (
        {"d\ufffd"} if policy == "replace" else set())
    for line in _output_lines(documents):
        _strict_json(line)
    _strict_json((documents / "stats.json").read_text(encoding="utf-8"))


def test_hostile_corpus_gives_identical_documents_in_every_running_mode(tmp_path):
    _hostile_corpus(tmp_path / "corpus")
    trees = []
    for name, beam_args in (("memory", BEAM_ARGS), ("threads", (
            "--direct_running_mode=multi_threading", "--direct_num_workers=2")), (
            "processes", ("--direct_running_mode=multi_processing", "--direct_num_workers=2"))):
        run_ingest(tmp_path / name, [str(tmp_path / "corpus")], tmp_path / name / "documents",
                   beam_args=beam_args, domain_field="domain", invalid_utf8="replace")
        trees.append(tree_bytes(tmp_path / name / "documents"))
    assert trees[0] == trees[1] == trees[2]
    assert json.loads(trees[0]["stats.json"])["files"]["binary"] == 3


def test_cli_survives_the_reported_hostile_lines_and_files(tiny_config_file, tmp_path):
    corpus = tmp_path / "hostile"
    write_jsonl(corpus / "good.jsonl", tiny_documents())
    _write(corpus / "deep.jsonl", DEEP_ARRAY + "\n")
    _write(corpus / "sur.jsonl", SURROGATE_LINES[0] + "\n")
    _write(corpus / "nan.jsonl", NON_FINITE_LINES[0] + "\n")
    _write(corpus / "ls.txt", Path(sys.executable).resolve().read_bytes())
    done = run_lmpipe("run", "--config", tiny_config_file, "--until", "ingest",
                      "--set", f"data.inputs=['{corpus}']")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"skipped binary file {corpus / 'ls.txt'}" in done.stderr
    record = json.loads((tmp_path / "root" / "latest_run.json").read_text())
    documents = REPO / record["components"]["ingest"]["outputs"]["documents"]
    stats = json.loads((documents / "stats.json").read_text())
    assert (stats["dropped"]["malformed_json"], stats["dropped"]["invalid_utf8"],
            stats["files"]["binary"], stats["documents_kept"]) == (1, 1, 1, 240 + 1)


# --- error messages ---

def test_an_empty_directory_is_named_as_one(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for pattern in (str(empty), str(empty) + "/"):
        with pytest.raises(UsageError, match=re.escape(
                f"data.inputs: directory {pattern} holds no .txt, .txt.gz, ")):
            resolve_raw_files((pattern,))


def test_a_text_field_no_record_has_is_named_in_the_error(tmp_path):
    corpus = write_jsonl(tmp_path / "c" / "a.jsonl", tiny_documents(copies=1))
    with pytest.raises(UsageError) as raised:
        run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", text_field="body")
    assert str(raised.value) == (
        "data.text_field: no documents left after cleaning (12 read; dropped: "
        "missing_text_field=12): 12 of 12 records have no field 'body'")


@pytest.mark.parametrize("lines, fields, error", [
    (['{"text": 1}', '{"text": "ok"}'], {"min_chars": 5},
     "data.text_field: no documents left after cleaning (2 read; dropped: text_not_string=1, "
     "too_short=1): 1 of 2 records have a 'text' that is not a string"),
    (['{"text": "abc"}', '{"text": "abcd"}', "{bad"], {"min_chars": 5},
     "data.min_chars: no documents left after cleaning (3 read; dropped: malformed_json=1, "
     "too_short=2): 2 of 3 documents are shorter than 5 characters"),
    (['{"text": "caf\xe9 au lait"}'], {},
     "data.invalid_utf8: no documents left after cleaning (1 read; dropped: invalid_utf8=1): "
     "1 of 1 records are not UTF-8 (data.invalid_utf8=replace keeps them, bad bytes replaced)"),
    (["{bad", "[1]", '{"text": "a"}'], {"min_chars": 2},
     "data.inputs: no documents left after cleaning (3 read; dropped: malformed_json=1, "
     "not_an_object=1, too_short=1)"),
])
def test_nothing_left_names_the_setting_behind_the_commonest_drop(tmp_path, lines, fields,
                                                                   error):
    raw = b"\n".join(line.encode("latin-1") for line in lines) + b"\n"
    corpus = _write(tmp_path / "c" / "a.jsonl", raw)
    with pytest.raises(UsageError) as raised:
        run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", **fields)
    assert str(raised.value) == error


@pytest.mark.parametrize("limit", [0.3, 0.4, None])
def test_a_corpus_mostly_dropped_stops_at_max_dropped_fraction(tmp_path, limit):
    good = [{"text": f"document number {i} has enough words"} for i in range(10)]
    records = good + good[:3] + [{"body": f"renamed field {i}"} for i in range(8)]
    corpus = write_jsonl(tmp_path / "c" / "a.jsonl", records)
    if limit == 0.3:  # 8 of 21 records are bad (38%); the 3 duplicates do not count
        with pytest.raises(UsageError) as raised:
            run_ingest(tmp_path, [str(corpus)], tmp_path / "documents",
                       max_dropped_fraction=limit, eval_fraction=0.5)
        assert str(raised.value) == (
            "data.max_dropped_fraction: cleaning dropped 8 of 21 records read (38.1%, "
            "duplicates aside; the limit is 0.3): missing_text_field=8; 8 of 21 records "
            "have no field 'text'")
    else:
        stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents",
                           max_dropped_fraction=limit, eval_fraction=0.5)
        assert stats["documents_kept"] == 10


def test_only_binary_files_is_named_in_the_error(tmp_path):
    path = _write(tmp_path / "c" / "a.txt", bytes(range(256)) * 8)
    with pytest.raises(UsageError) as raised:
        run_ingest(tmp_path, [str(path)], tmp_path / "documents")
    assert str(raised.value) == ("data.inputs: no documents left after cleaning (0 read; "
                                 "dropped: none; files skipped: binary=1)")



# --- inputs that are not plain files, and paths that look like globs ---

def test_a_fifo_or_device_is_refused_before_it_blocks_ingest(tmp_path):
    write_jsonl(tmp_path / "c" / "good.jsonl", tiny_documents(copies=1))
    fifo = tmp_path / "c" / "pipe.jsonl"
    os.mkfifo(fifo)  # no writer: opening it would wait forever
    (tmp_path / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    for pattern, path, kind in ((tmp_path / "c", fifo, "a FIFO"),
                                (tmp_path / "zero.txt", tmp_path / "zero.txt", "a device")):
        with pytest.raises(UsageError) as raised:
            resolve_raw_files((str(pattern),))
        assert str(raised.value) == (f"data.inputs: {path} (from {pattern}) is {kind}, "
                                     f"not a regular file")


def test_an_existing_path_with_glob_characters_is_read_literally(tmp_path):
    corpus = write_jsonl(tmp_path / "v[1]" / "a.jsonl", tiny_documents(copies=1))
    for pattern in (corpus, corpus.parent):
        assert resolve_raw_files((str(pattern),)).properties["files"] == [str(corpus)]
    escaped = str(tmp_path / "v[[]1]" / "*.jsonl")  # still a glob when it does not exist
    assert resolve_raw_files((escaped,)).properties["files"] == [str(corpus)]


def test_a_scheme_beam_has_no_filesystem_for_is_a_usage_error(tmp_path):
    pattern = f"file://{tmp_path}/a.jsonl"
    with pytest.raises(UsageError, match=re.escape(
            f"data.inputs: {pattern}: no Beam filesystem for file:// (local paths take no "
            f"scheme")):
        resolve_raw_files((pattern,))


def test_nothing_left_counts_corrupt_files(tmp_path):
    path = _write(tmp_path / "c" / "a.jsonl.gz", b'{"text": "not gzip at all"}\n')
    with pytest.raises(UsageError) as raised:
        run_ingest(tmp_path, [str(path)], tmp_path / "documents")
    assert str(raised.value) == ("data.inputs: no documents left after cleaning (0 read; "
                                 "dropped: none; files skipped: corrupt=1)")
