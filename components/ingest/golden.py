"""The golden eval set (`evaluation.golden_inputs`): read and cleaned as the corpus is,
written as its own documents artifact, and its document ids handed to the corpus's ingest,
which drops those documents from both splits (drop reason `golden`).

A golden set is small (a fixed evaluation set), so it is read in this process rather than
by Beam; it goes through the same `RecordReader` and `Cleaner` as the corpus, so a
document in it has the id the same text has in the corpus.
"""

from __future__ import annotations

from components.ingest import cleaning
from components.ingest.records import FileRange, RecordReader, require_fields
from components.ingest.sources import file_format
from components.shared import shards
from pipeline.core import files
from pipeline.core.contracts import documents


def read_golden(paths: list[str], data) -> tuple[dict[str, tuple[str, int]], dict]:
    """The cleaned, deduplicated golden documents and what cleaning dropped.

    Args:
        paths: the matched golden files.
        data: the `DataConfig` (the corpus's cleaning settings).

    Returns:
        `(documents, counts)`: document id -> (its documents line, its UTF-8 bytes), and
        `{"read": n, "dropped": {reason: n}}`.
    """
    require_fields(paths, data, "evaluation.golden_inputs")
    cleaner = cleaning.Cleaner(data)
    found, read, dropped = {}, 0, {}
    for path in paths:
        fmt = file_format(path)
        for raw in RecordReader(FileRange(path), data.txt_mode):
            read += 1
            document, reason, _ = cleaner.clean(raw, fmt)
            if document is None:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            encoded = document["text"].encode("utf-8")
            doc_id = cleaning.document_id_of_bytes(encoded)
            if doc_id in found:
                dropped["duplicate"] = dropped.get("duplicate", 0) + 1
            found[doc_id] = (cleaning.encode_document(document), len(encoded))
    return found, {"read": read, "dropped": dropped}


def write_golden(directory: str, found: dict[str, tuple[str, int]], counts: dict,
                 num_files: int) -> None:
    """Write the golden documents artifact (see `pipeline/core/contracts/documents.py`).

    Args:
        directory: the artifact directory.
        found: document id -> (its documents line, its UTF-8 bytes), from `read_golden`.
        counts: `{"read", "dropped"}` from `read_golden`.
        num_files: how many golden files were matched.
    """
    names = documents.shard_names(documents.GOLDEN_SPLIT, 1, documents.DOCUMENTS_SUFFIX)
    names = names if found else []
    if found:  # sorted by id, as the corpus's shards are
        shards.write_jsonl_gz(files.join(directory, names[0]),
                              [found[doc_id][0] for doc_id in sorted(found)])
    files.write_json(files.join(directory, documents.STATS_FILE), {
        "input_files": num_files,
        "documents_read": counts["read"],
        "documents_kept": len(found),
        "dropped": {reason: counts["dropped"].get(reason, 0)
                    for reason in cleaning.DROP_REASONS},
        "splits": {documents.GOLDEN_SPLIT: {
            "documents": len(found), "bytes": sum(size for _, size in found.values()),
            "shards": names}},
    })
