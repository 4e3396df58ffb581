"""ingest: input matching, cleaning and drop counts, the split, the Beam run and its outputs."""

from __future__ import annotations

import gzip
import json
import os
import re
import unicodedata

import pytest

from components.data import cleaning
from components.data.sources import resolve_raw_files
from pipeline.errors import UsageError
from tests.components.data_fixtures import data_config, read_documents, run_ingest, tree_bytes
from tests.conftest import tiny_documents, write_jsonl


def _write(path, text: str, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8")) if mode == "w" else path.write_bytes(text)
    return path


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
    path = _write(tmp_path / "notes.csv", "a,b\n")
    with pytest.raises(UsageError, match="notes.csv .*not a supported file type"):
        resolve_raw_files((str(path),))


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
    (b'{"text": "caf\xff"}', "invalid_utf8"),
])
def test_parse_record_drop_reasons(line, reason):
    document, got = cleaning.parse_record(line, "jsonl", data_config(["x"]))
    assert document is None and got == reason
    assert got in cleaning.DROP_REASONS


def test_parse_record_normalizes_and_keeps_domain_and_metadata():
    data = data_config(["x"], domain_field="source")
    line = json.dumps({"text": "cafe\u0301", "source": 7, "name": "n", "nested": {"a": 1}})
    document, reason = cleaning.parse_record(line.encode(), "jsonl", data)
    assert reason is None
    assert document == {"text": "caf\u00e9", "domain": "7", "meta": {"name": "n"}}
    nfkc_config = data_config(["x"], normalization="NFKC")
    nfkc, _ = cleaning.parse_record("\ufb01ne".encode(), "txt", nfkc_config)
    assert nfkc["text"] == "fine"
    bom, _ = cleaning.parse_record(b'\xef\xbb\xbf{"text": "t"}', "jsonl", data)
    assert bom["text"] == "t"


def test_split_is_deterministic_salted_and_close_to_the_fraction():
    texts = [f"document number {i}" for i in range(4000)]
    splits = [cleaning.assign_split(t, "salt", 0.2) for t in texts]
    assert splits == [cleaning.assign_split(t, "salt", 0.2) for t in texts]
    share = splits.count("eval") / len(texts)
    assert abs(share - 0.2) < 3 * (0.2 * 0.8 / len(texts)) ** 0.5
    resalted = [cleaning.assign_split(t, "other", 0.2) for t in texts]
    assert resalted != splits
    # A larger fraction only moves documents from train to eval, never back.
    wider = [cleaning.assign_split(t, "salt", 0.3) for t in texts]
    assert all(w == "eval" for s, w in zip(splits, wider) if s == "eval")


def test_ingest_counts_drops_and_writes_normalized_split_documents(tmp_path):
    corpus = tmp_path / "corpus"
    good = [{"text": f"Doc {i} cafe\u0301.", "domain": "d%d" % (i % 2), "name": f"n{i}"}
            for i in range(30)]
    lines = [json.dumps(r) for r in good] + [
        "", "{broken", '{"title": "no text"}', '{"text": 5}', '{"text": "   "}', "[]"]
    _write(corpus / "a.jsonl", "\n".join(lines) + "\n")
    _write(corpus / "b.txt", "plain one\r\n\r\nplain two\r\n")
    with gzip.open(corpus / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "zipped doc"}) + "\n")
    _write(corpus / "d.txt", b"bad \xff byte\n", mode="wb")

    stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents",
                       domain_field="domain", eval_fraction=0.3)

    assert stats["input_files"] == 4
    assert stats["documents_read"] == 36 + 3 + 1 + 1
    assert stats["documents_kept"] == 30 + 2 + 1
    assert stats["dropped"] == {"empty": 3, "malformed_json": 1, "not_an_object": 1,
                                "missing_text_field": 1, "text_not_string": 1, "invalid_utf8": 1}
    assert stats["normalization"] == "NFC"
    documents = read_documents(tmp_path / "documents")
    expected = {unicodedata.normalize("NFC", r["text"]) for r in good}
    expected |= {"plain one", "plain two", "zipped doc"}
    assert {d["text"] for docs in documents.values() for d in docs} == expected
    for split, docs in documents.items():
        assert stats["splits"][split]["documents"] == len(docs)
        assert stats["splits"][split]["bytes"] == sum(len(d["text"].encode()) for d in docs)
        for d in docs:
            assert cleaning.assign_split(d["text"], "lmpipe", 0.3) == split
        for domain, counts in stats["splits"][split]["domains"].items():
            assert counts["documents"] == sum(d["domain"] == domain for d in docs)
    first = next(d for docs in documents.values() for d in docs if d["text"] == "Doc 3 caf\u00e9.")
    assert first == {"text": "Doc 3 caf\u00e9.", "domain": "d1", "meta": {"name": "n3"}}
    # Shards are sorted by document id, whatever the arrival order.
    for docs in documents.values():
        ids = [cleaning.document_id(d["text"]) for d in docs]
        assert ids == sorted(ids)


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
    split = cleaning.assign_split("only one document", "lmpipe", 0.01)
    empty = "eval" if split == "train" else "train"
    with pytest.raises(UsageError, match=f"leaves the {empty} split empty"):
        run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", eval_fraction=0.01)


def test_txt_file_mode_reads_a_document_per_file(tmp_path):
    corpus = tmp_path / "c"
    for i in range(12):
        _write(corpus / f"f{i}.txt", f"file {i}\nsecond line\n")
    stats = run_ingest(tmp_path, [str(corpus)], tmp_path / "documents", txt_mode="file",
                       eval_fraction=0.3)
    texts = {d["text"] for docs in read_documents(tmp_path / "documents").values() for d in docs}
    assert stats["documents_read"] == 12
    assert texts == {f"file {i}\nsecond line\n" for i in range(12)}
    assert os.path.exists(tmp_path / "documents" / "train-00000-of-00001.jsonl.gz")
