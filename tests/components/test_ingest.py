"""ingest: input matching, reading, each cleaning step and its counts, deduplication,
splitting of over-long documents, the split, the Beam run and its outputs."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import unicodedata
import zlib

import pytest

from components.ingest import cleaning
from components.ingest.records import FileRange, RecordReader, plan_ranges
from components.ingest.sources import resolve_raw_files
from pipeline.core.errors import UsageError
from tests.components.data_fixtures import data_config, read_documents, run_ingest, tree_bytes
from tests.conftest import tiny_documents, write_jsonl


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _clean(raw: bytes, fmt: str = "jsonl", **fields):
    return cleaning.Cleaner(data_config(["x"], **fields)).clean(raw, fmt)


# --- matching ---

def test_resolver_matches_files_directories_and_globs(tmp_path):
    a = write_jsonl(tmp_path / "c" / "a.jsonl", [{"text": "x"}])
    b = _write(tmp_path / "c" / "sub" / "b.txt", "y\n")
    _write(tmp_path / "c" / "README.md", "not a corpus file")
    c = _write(tmp_path / "d" / "c.jsonl", "{}\n")

    by_dir = resolve_raw_files((str(tmp_path / "c"),))
    by_glob = resolve_raw_files((str(tmp_path / "*" / "*.jsonl"),))
    by_file = resolve_raw_files((str(b),))

    assert by_dir.type == "RawFiles"
    assert by_dir.properties["files"] == [str(a), str(b)]
    assert by_dir.properties["sizes"] == [a.stat().st_size, b.stat().st_size]
    assert by_dir.properties["bytes"] == a.stat().st_size + b.stat().st_size
    assert by_glob.properties["files"] == [str(a), str(c)]
    assert by_file.properties["files"] == [str(b)]
    assert by_dir.uri == str(tmp_path / "c")


def test_fingerprint_changes_with_content_and_not_otherwise(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}])
    first = resolve_raw_files((str(path),)).fingerprint
    assert resolve_raw_files((str(path),)).fingerprint == first
    write_jsonl(path, [{"text": "one two"}])
    assert resolve_raw_files((str(path),)).fingerprint != first


def test_missing_path_is_a_usage_error_naming_it(tmp_path):
    present = write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    missing = tmp_path / "nope" / "*.jsonl"
    with pytest.raises(UsageError, match=re.escape(f"data.inputs: {missing} matches no files")):
        resolve_raw_files((str(present), str(missing)))


def test_unsupported_named_file_is_a_usage_error(tmp_path):
    path = _write(tmp_path / "notes.xlsx", "a,b\n")
    with pytest.raises(UsageError, match="notes.xlsx .*not a supported file type"):
        resolve_raw_files((str(path),))


# --- reading ---

def test_byte_ranges_read_every_line_exactly_once(tmp_path):
    lines = [f"line {i} " + "x" * (i % 23) for i in range(500)]
    path = _write(tmp_path / "a.txt", "\r\n".join(lines) + "\r\n")
    size = path.stat().st_size
    for range_bytes in (7, 64, 1000, size):
        ranges = plan_ranges([(str(path), size)], "line", range_bytes)
        assert len(ranges) == -(-size // range_bytes)
        got = [r for file_range in ranges for r in RecordReader(file_range, "line")]
        assert got == [line.encode() for line in lines]


def test_compressed_files_and_whole_file_mode(tmp_path):
    gz = tmp_path / "a.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b'{"text": "one"}\n{"text": "two"}\n')
    bz = _write(tmp_path / "b.txt.bz2", bz2.compress(b"three\nfour\n"))
    whole = _write(tmp_path / "c.txt", "five\nsix\n")
    assert list(RecordReader(FileRange(str(gz)), "line")) == [b'{"text": "one"}', b'{"text": "two"}']
    assert list(RecordReader(FileRange(str(bz)), "line")) == [b"three", b"four"]
    assert list(RecordReader(FileRange(str(whole)), "file")) == [b"five\nsix\n"]
    # Compressed and whole-file inputs are never cut into byte ranges.
    assert plan_ranges([(str(gz), 10**9), (str(whole), 10**9)], "file", 100) == [
        FileRange(str(gz)), FileRange(str(whole))]


@pytest.mark.parametrize("damage", ["truncated", "truncated_in_first_block", "garbage"])
def test_corrupt_gzip_keeps_what_decoded_and_reports_the_error(tmp_path, damage):
    payload = gzip.compress(b"".join(b'{"text": "line %d"}\n' % i for i in range(20000)))
    content = {"truncated": payload[:len(payload) // 2],
               # the damage inside the first 8 KiB of content, which judge the file
               "truncated_in_first_block": payload[:300],
               "garbage": b"\x1f\x8b\x08" + bytes(64)}[damage]
    path = _write(tmp_path / "a.jsonl.gz", content)
    reader = RecordReader(FileRange(str(path)), "line")
    records = list(reader)
    assert reader.error is not None
    assert records == [b'{"text": "line %d"}' % i for i in range(len(records))]
    if damage != "garbage":
        decoded = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(content)
        assert len(records) == decoded.count(b"\n") > 0  # every whole line before the damage


# --- cleaning, step by step ---

@pytest.mark.parametrize("line, reason", [
    (b"", "empty"),
    (b"   ", "empty"),
    (b'{"text": "  \\t "}', "empty"),
    (b'{"text": "ok"', "malformed_json"),
    (b"not json", "malformed_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"body": "no text field"}', "missing_text_field"),
    (b'{"text": 42}', "text_not_string"),
    (b'{"text": null}', "text_not_string"),
    (b'{"text": ["a"]}', "text_not_string"),
    (b'{"text": "caf\xff"}', "invalid_utf8"),
    (b'{"text": "a\x00b"}', "binary"),
    (bytes(range(128, 256)) * 4, "binary"),
    (b'{"text": "abc"}', "too_short"),
])
def test_drop_reasons(line, reason):
    document, got, _ = _clean(line, min_chars=4)
    assert document is None and got == reason
    assert got in cleaning.DROP_REASONS


def test_invalid_utf8_can_be_replaced_and_is_counted():
    document, _, changes = _clean(b"bad \xff byte", "txt", invalid_utf8="replace")
    assert document["text"] == "bad \ufffd byte" and changes == ["invalid_utf8_replaced"]


def test_each_cleaning_step_and_its_change_name():
    raw = "  caf\u0065\u0301\x07 line  \r\n\r\n\tindented\x85 end\t \r\n\n".encode()
    document, _, changes = _clean(raw, "txt")
    assert document["text"] == "  caf\u00e9 line\n\n\tindented end"
    assert changes == ["control_chars_removed", "unicode_normalized", "whitespace_normalized"]
    kept, _, kept_changes = _clean(raw, "txt", control_chars="keep", normalization="none",
                                   whitespace="keep")
    assert kept["text"] == raw.decode() and kept_changes == []
    collapsed, _, _ = _clean(raw, "txt", whitespace="collapse")
    assert collapsed["text"] == "caf\u00e9 line indented end"
    nfkc, _, _ = _clean("\ufb01ne".encode(), "txt", normalization="NFKC")
    assert nfkc["text"] == "fine"
    bom, _, _ = _clean(b'\xef\xbb\xbf{"text": "t"}', "jsonl")
    assert bom["text"] == "t"


def test_domain_and_scalar_metadata_are_kept():
    line = json.dumps({"text": "cafe\u0301", "source": 7, "name": "n", "nested": {"a": 1}})
    document, reason, _ = _clean(line.encode(), domain_field="source")
    assert reason is None
    assert document == {"text": "caf\u00e9", "domain": "7", "meta": {"name": "n"}}


def test_split_long_cuts_at_line_breaks_and_loses_nothing():
    text = "".join(f"line {i:04d} of the long one\n" for i in range(400)) + "x" * 2500
    pieces = cleaning.split_long(text, 1000)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= 1000 for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-3])  # cut after line breaks ...
    assert pieces[-3:] == ["x" * 1000, "x" * 1000, "x" * 500]  # ... or hard when there are none
    assert cleaning.split_long("short", 1000) == ["short"]


def test_split_is_deterministic_salted_and_close_to_the_fraction():
    texts = [f"document number {i}" for i in range(4000)]
    splits = [cleaning.split_of(cleaning.document_id(t), "salt", 0.2) for t in texts]
    assert splits == [cleaning.split_of(cleaning.document_id(t), "salt", 0.2) for t in texts]
    share = splits.count("eval") / len(texts)
    assert abs(share - 0.2) < 3 * (0.2 * 0.8 / len(texts)) ** 0.5
    resalted = [cleaning.split_of(cleaning.document_id(t), "other", 0.2) for t in texts]
    assert resalted != splits
    # A larger fraction only moves documents from train to eval, never back.
    wider = [cleaning.split_of(cleaning.document_id(t), "salt", 0.3) for t in texts]
    assert all(w == "eval" for s, w in zip(splits, wider) if s == "eval")


# --- the Beam run ---

def test_ingest_counts_drops_deduplicates_and_writes_split_documents(tmp_path):
    corpus = tmp_path / "corpus"
    good = [{"text": f"Doc {i} cafe\u0301.", "domain": "d%d" % (i % 2), "name": f"n{i}"}
            for i in range(30)]
    lines = [json.dumps(r) for r in good] + [
        "", "{broken", '{"title": "no text"}', '{"text": 5}', '{"text": "   "}', "[]"]
    _write(corpus / "a.jsonl", "\n".join(lines) + "\n")
    _write(corpus / "b.txt", "plain one\r\n\r\nplain two  \r\n")
    with gzip.open(corpus / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        # Duplicates after cleaning, across files and domains: one survives.
        f.write(json.dumps({"text": "zipped doc", "domain": "z"}) + "\n")
        f.write(json.dumps({"text": "Doc 4 caf\u00e9.  ", "domain": "zz"}) + "\n")
    _write(corpus / "d.txt", b"bad \xff byte\nplain one\n")
    _write(corpus / "e.txt", "")

    stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents",
                       domain_field="domain", eval_fraction=0.3)

    assert stats["input_files"] == 5
    assert stats["files"] == {"read": 5, "empty": 1, "binary": 0, "not_utf8": 0, "skipped": [],
                              "corrupt": []}
    assert stats["documents_read"] == 36 + 3 + 2 + 2
    assert stats["documents_kept"] == 30 + 2 + 1
    assert stats["dropped"] == {
        "empty": 3, "binary": 0, "invalid_utf8": 1, "malformed_json": 1, "malformed_record": 0,
        "not_an_object": 1, "missing_text_field": 1, "text_not_string": 1, "too_short": 0,
        "duplicate": 2, "golden": 0, "earlier_span": 0}
    assert stats["changed"]["unicode_normalized"] == 30
    assert stats["changed"]["whitespace_normalized"] == 2
    documents = read_documents(tmp_path / "documents")
    everything = [d for docs in documents.values() for d in docs]
    expected = {unicodedata.normalize("NFC", r["text"]) for r in good}
    expected |= {"plain one", "plain two", "zipped doc"}
    assert sorted(d["text"] for d in everything) == sorted(expected)
    duplicate = next(d for d in everything if d["text"] == "Doc 4 caf\u00e9.")
    assert duplicate == {"text": "Doc 4 caf\u00e9.", "domain": "d0", "meta": {"name": "n4"}}
    for split, docs in documents.items():
        assert stats["splits"][split]["documents"] == len(docs)
        assert stats["splits"][split]["bytes"] == sum(len(d["text"].encode()) for d in docs)
        for d in docs:
            assert cleaning.split_of(cleaning.document_id(d["text"]), "lmpipe", 0.3) == split
        for domain, counts in stats["splits"][split]["domains"].items():
            assert counts["documents"] == sum(d["domain"] == domain for d in docs)
        # Shards are sorted by document id, whatever the arrival order.
        ids = [cleaning.document_id(d["text"]) for d in docs]
        assert ids == sorted(ids)


def test_over_long_documents_are_split_into_pieces_of_one_split(tmp_path):
    long_text = "\n".join(f"sentence {i} of a long document." for i in range(300))
    write_jsonl(tmp_path / "c" / "a.jsonl", [{"text": long_text}] + tiny_documents(copies=2))
    stats = run_ingest(tmp_path, [str(tmp_path / "c")], tmp_path / "documents", max_chars=1000,
                       eval_fraction=0.3)
    assert stats["long_documents_split"] == 1
    split = cleaning.split_of(cleaning.document_id(long_text), "lmpipe", 0.3)
    pieces = [d["text"] for d in read_documents(tmp_path / "documents")[split]
              if d["text"].startswith("sentence")]
    assert len(pieces) == len(cleaning.split_long(long_text, 1000)) > 1
    assert sorted(pieces) == sorted(cleaning.split_long(long_text, 1000))
    assert stats["documents_kept"] == 1 + 24
    assert stats["splits"]["train"]["documents"] + stats["splits"]["eval"]["documents"] == (
        24 + len(pieces))


def test_split_is_stable_when_files_are_added_and_reruns_are_identical(tmp_path):
    corpus = tmp_path / "corpus"
    write_jsonl(corpus / "a.jsonl", tiny_documents(copies=5))
    run_ingest(tmp_path, [str(corpus / "*.jsonl")], tmp_path / "one", domain_field="domain",
               eval_fraction=0.2)
    run_ingest(tmp_path, [str(corpus / "*.jsonl")], tmp_path / "again", domain_field="domain",
               eval_fraction=0.2)
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "again")

    extra = [{"text": f"A later document {i}.", "domain": "new"} for i in range(40)]
    write_jsonl(corpus / "b.jsonl", extra)
    run_ingest(tmp_path, [str(corpus / "*.jsonl")], tmp_path / "grown", domain_field="domain",
               eval_fraction=0.2)
    before = {d["text"]: split for split, docs in read_documents(tmp_path / "one").items()
              for d in docs}
    after = {d["text"]: split for split, docs in read_documents(tmp_path / "grown").items()
             for d in docs}
    assert len(after) == len(before) + len(extra)
    assert all(after[text] == split for text, split in before.items())
    assert {after[d["text"]] for d in extra} == {"train", "eval"}


def test_nothing_left_is_a_usage_error(tmp_path):
    corpus = _write(tmp_path / "c" / "a.jsonl", '\n{"text": ""}\n{bad\n')
    with pytest.raises(UsageError, match=r"no documents left after cleaning \(3 read; "
                                         r"dropped: empty=2, malformed_json=1\)"):
        run_ingest(tmp_path, [str(corpus)], tmp_path / "documents")


def test_empty_eval_split_is_a_usage_error(tmp_path):
    corpus = write_jsonl(tmp_path / "c" / "a.jsonl", [{"text": "only one document"}])
    split = cleaning.split_of(cleaning.document_id("only one document"), "lmpipe", 0.01)
    empty = "eval" if split == "train" else "train"
    with pytest.raises(UsageError, match=f"leaves the {empty} split empty"):
        run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", eval_fraction=0.01)


def test_txt_file_mode_reads_a_document_per_file(tmp_path):
    corpus = tmp_path / "c"
    for i in range(12):
        _write(corpus / f"f{i}.txt", f"file {i}\r\nsecond line\n")
    stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", txt_mode="file",
                       eval_fraction=0.3)
    texts = {d["text"] for docs in read_documents(tmp_path / "documents").values() for d in docs}
    assert stats["documents_read"] == 12
    assert texts == {f"file {i}\nsecond line" for i in range(12)}
    assert os.path.exists(tmp_path / "documents" / "train-00000-of-00001.jsonl.gz")


# --- the golden eval set (evaluation.golden_inputs) ---

def test_golden_documents_never_reach_a_split_and_are_counted(tmp_path):
    corpus = [{"text": f"corpus document {i}", "domain": "d"} for i in range(40)]
    write_jsonl(tmp_path / "corpus" / "a.jsonl", corpus)
    # Four corpus documents, one of them spelled with extra whitespace that cleaning
    # removes (the same document to dedup), one twice, and one only in the golden set.
    golden = [{"text": "corpus document 3"}, {"text": "corpus document 7  "},
              {"text": "corpus document 11"}, {"text": "corpus document 11"},
              {"text": "corpus document 20"}, {"text": "golden only"}]
    write_jsonl(tmp_path / "golden" / "g.jsonl", golden)

    stats = run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "documents",
                       golden=[str(tmp_path / "golden" / "*.jsonl")], eval_fraction=0.3)

    assert stats["dropped"]["golden"] == 4
    assert stats["documents_kept"] == 36
    kept = {d["text"] for docs in read_documents(tmp_path / "documents").values() for d in docs}
    golden_texts = {f"corpus document {i}" for i in (3, 7, 11, 20)}
    assert not kept & golden_texts
    assert len(kept) == 36
    golden_stats = json.loads((tmp_path / "documents-golden" / "stats.json").read_text())
    assert golden_stats["documents_kept"] == 5
    assert golden_stats["dropped"]["duplicate"] == 1
    written = read_documents(tmp_path / "documents-golden")["golden"]
    assert sorted(d["text"] for d in written) == sorted(golden_texts | {"golden only"})
    ids = [cleaning.document_id(d["text"]) for d in written]
    assert ids == sorted(ids)


def test_without_a_golden_set_nothing_is_dropped_as_golden(tmp_path):
    write_jsonl(tmp_path / "corpus" / "a.jsonl", [{"text": f"doc {i}"} for i in range(20)])
    stats = run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "documents",
                       eval_fraction=0.3)
    assert stats["dropped"]["golden"] == 0 and stats["documents_kept"] == 20
    golden_stats = json.loads((tmp_path / "documents-golden" / "stats.json").read_text())
    assert golden_stats["splits"]["golden"] == {"documents": 0, "bytes": 0, "shards": []}


def test_golden_pattern_matching_nothing_is_a_usage_error_naming_the_key(tmp_path):
    write_jsonl(tmp_path / "corpus" / "a.jsonl", [{"text": "doc"}])
    with pytest.raises(UsageError, match=r"^evaluation\.golden_inputs: .*nothing\*\.jsonl "
                                         r"matches no files$"):
        run_ingest(tmp_path, [str(tmp_path / "corpus")], tmp_path / "documents",
                   golden=[str(tmp_path / "nothing*.jsonl")])
