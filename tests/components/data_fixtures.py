"""Helpers for the data component tests: run ingest, tokenizer and transform in-process."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

from pipeline.core.artifacts import Artifact
from pipeline.core.config import DataConfig, TaskConfig, TokenizerConfig, TransformConfig
from pipeline.core.configio import build
from pipeline.local_runner import Runtime

BEAM_ARGS = ("--direct_running_mode=in_memory",)

# Text that tokenizers get wrong: accents, CJK, emoji, combining marks, runs of spaces.
TRICKY_TEXTS = [
    "Café naïve façade, Ünïcode — déjà vu.",
    "漢字とかなの文。한국어 문장입니다.",
    "emoji 🤖🎉 and skin tone 👍🏽 ok",
    "combining e\u0301 and a\u0308 marks",
    "runs   of    spaces\tand\ttabs",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n    indented line",
]


def runtime(tmp_path: Path, beam_args: tuple[str, ...] = BEAM_ARGS) -> Runtime:
    return Runtime(run_id="test", root=str(tmp_path), beam_args=beam_args)


def data_config(inputs: list[str], **fields) -> DataConfig:
    return build(DataConfig, {"inputs": inputs, **fields}, "data")


def run_ingest(tmp_path: Path, inputs: list[str], out: Path, beam_args=BEAM_ARGS,
               golden: list[str] = (), **fields) -> dict:
    """Resolve and ingest `inputs` into `out` (and the golden set `golden` into
    `out`-golden); returns the parsed stats.json."""
    from components import ingest

    config = data_config(inputs, **fields)
    resolving = SimpleNamespace(data=config, evaluation=SimpleNamespace(golden_inputs=golden))
    raw = {"raw": ingest.resolve_raw(resolving, {}),
           "golden_raw": ingest.resolve_golden(resolving, {})}
    outputs = {"documents": out, "golden": out.with_name(out.name + "-golden")}
    for directory in outputs.values():
        directory.mkdir(parents=True, exist_ok=True)
    ingest.run(raw, {name: str(d) for name, d in outputs.items()}, runtime(tmp_path, beam_args),
               config)
    return json.loads((out / "stats.json").read_text())


def read_documents(documents: Path) -> dict[str, list[dict]]:
    """split -> documents, read back from the shards stats.json lists."""
    stats = json.loads((documents / "stats.json").read_text())
    result = {}
    for split, info in stats["splits"].items():
        result[split] = []
        for name in info["shards"]:
            with gzip.open(documents / name, "rt", encoding="utf-8") as f:
                result[split].extend(json.loads(line) for line in f)
    return result


def document_texts(documents: Path) -> dict[str, set[str]]:
    """split -> the texts in an ingest documents artifact."""
    return {split: {d["text"] for d in docs} for split, docs in read_documents(documents).items()}


def run_tokenizer(tmp_path: Path, documents: Path, out: Path, **fields) -> dict:
    from components import tokenizer

    out.mkdir(parents=True, exist_ok=True)
    config = build(TokenizerConfig, fields, "tokenizer")
    return tokenizer.run({"documents": Artifact("Documents", str(documents), "d")},
                         {"tokenizer": str(out)}, runtime(tmp_path), config)


def run_transform(tmp_path: Path, documents: Path, tokenizer_dir: Path, out: Path,
                  beam_args=BEAM_ARGS, **fields) -> dict:
    """Transform (a language model's) into `out/examples` and `out/statistics`; returns the
    run's properties."""
    from components import transform

    outputs = {name: out / name for name in ("examples", "statistics")}
    for path in outputs.values():
        path.mkdir(parents=True, exist_ok=True)
    config = build(TransformConfig, fields, "transform")
    # A language model's transform reads nothing of `data` (its input is ingest's output).
    data = data_config([str(documents)])
    return transform.run({"documents": Artifact("Documents", str(documents), "d"),
                          "tokenizer": Artifact("Tokenizer", str(tokenizer_dir), "t")},
                         {k: str(v) for k, v in outputs.items()}, runtime(tmp_path, beam_args),
                         data=data, transform=config, task=TaskConfig())


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Relative path -> content of every file below `directory`."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def ram_filesystem():
    """A Beam `FileSystem` for `ram://` paths over TensorFlow's in-memory filesystem.

    Defining the class registers the scheme with Beam (`FileSystem.get_all_subclasses`),
    so Beam's `FileSystems` and `tf.io.gfile` see the same non-local files: code that
    only works on local disk fails on these paths, as it would on gs://. Works with the
    DirectRunner's in_memory mode (the files live in this process).
    """
    global _RAM_FILESYSTEM
    if _RAM_FILESYSTEM is None:
        _RAM_FILESYSTEM = _define_ram_filesystem()
    return _RAM_FILESYSTEM


_RAM_FILESYSTEM = None


def ram_files(root: str, max_depth: int = 6) -> list[str]:
    """Every file below `root` on TensorFlow's `ram://` filesystem (which lists no
    directories: only a glob of a file's exact depth finds it)."""
    import tensorflow as tf

    return sorted(path for depth in range(1, max_depth + 1)
                  for path in tf.io.gfile.glob(root.rstrip("/") + "/*" * depth))


def _define_ram_filesystem():
    import tensorflow as tf
    from apache_beam.io.filesystem import (CompressedFile, CompressionTypes, FileMetadata,
                                           FileSystem)

    gfile = tf.io.gfile

    class RamFileSystem(FileSystem):
        @classmethod
        def scheme(cls):
            return "ram"

        def join(self, basepath, *paths):
            return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

        def split(self, path):
            head, _, tail = path.rstrip("/").rpartition("/")
            return head, tail

        def mkdirs(self, path):
            gfile.makedirs(path)

        def has_dirs(self):
            return False

        def _list(self, dir_or_prefix):
            for path in ram_files(dir_or_prefix.rpartition("/")[0]):
                if path.startswith(dir_or_prefix):
                    yield self.metadata(path)

        def _open(self, path, mode, compression_type):
            compression_type = FileSystem._get_compression_type(path, compression_type)
            raw = gfile.GFile(path, mode)
            if compression_type == CompressionTypes.UNCOMPRESSED:
                return raw
            return CompressedFile(raw, compression_type=compression_type)

        def create(self, path, mime_type="application/octet-stream",
                   compression_type=CompressionTypes.AUTO):
            return self._open(path, "wb", compression_type)

        def open(self, path, mime_type="application/octet-stream",
                 compression_type=CompressionTypes.AUTO):
            return self._open(path, "rb", compression_type)

        def copy(self, source_file_names, destination_file_names):
            for source, destination in zip(source_file_names, destination_file_names):
                gfile.copy(source, destination, overwrite=True)

        def rename(self, source_file_names, destination_file_names):
            for source, destination in zip(source_file_names, destination_file_names):
                gfile.rename(source, destination, overwrite=True)

        def exists(self, path):
            return gfile.exists(path)

        def size(self, path):
            return gfile.stat(path).length

        def last_updated(self, path):
            return gfile.stat(path).mtime_nsec / 1e9

        def checksum(self, path):
            return str(self.size(path))

        def metadata(self, path):
            stat = gfile.stat(path)
            return FileMetadata(path, stat.length, stat.mtime_nsec / 1e9)

        def delete(self, paths):
            for path in paths:
                gfile.remove(path)

    return RamFileSystem
