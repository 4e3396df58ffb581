"""Helpers for the data component tests: run ingest, tokenizer and transform in-process."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

from pipeline.artifacts import Artifact
from pipeline.config import DataConfig, TokenizerConfig, TransformConfig
from pipeline.configio import build
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


def run_ingest(tmp_path: Path, inputs: list[str], out: Path, beam_args=BEAM_ARGS, **fields) -> dict:
    """Resolve and ingest `inputs` into `out`; returns the parsed stats.json."""
    from components import ingest

    config = data_config(inputs, **fields)
    raw = ingest.resolve_raw(SimpleNamespace(data=config), {})
    out.mkdir(parents=True, exist_ok=True)
    ingest.run({"raw": raw}, {"documents": str(out)}, runtime(tmp_path, beam_args), config)
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


def run_tokenizer(tmp_path: Path, documents: Path, out: Path, **fields) -> dict:
    from components import tokenizer

    out.mkdir(parents=True, exist_ok=True)
    config = build(TokenizerConfig, fields, "tokenizer")
    return tokenizer.run({"documents": Artifact("Documents", str(documents), "d")},
                         {"tokenizer": str(out)}, runtime(tmp_path), config)


def run_transform(tmp_path: Path, documents: Path, tokenizer_dir: Path, out: Path,
                  beam_args=BEAM_ARGS, **fields) -> dict:
    """Transform into `out/examples` and `out/statistics`; returns the run's properties."""
    from components import transform

    outputs = {name: out / name for name in ("examples", "statistics")}
    for path in outputs.values():
        path.mkdir(parents=True, exist_ok=True)
    config = build(TransformConfig, fields, "transform")
    return transform.run({"documents": Artifact("Documents", str(documents), "d"),
                          "tokenizer": Artifact("Tokenizer", str(tokenizer_dir), "t")},
                         {k: str(v) for k, v in outputs.items()}, runtime(tmp_path, beam_args),
                         config)


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Relative path -> content of every file below `directory`."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}
