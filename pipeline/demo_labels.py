"""Derive the fine-tuning example's labeled JSONL from the demo corpus (no download).

Each demo document is a standard-library docstring whose `domain` is its top-level
package. This keeps the documents of the `--top-k` most frequent packages and writes

    {"text": docstring, "package": top-level package (the classification label),
     "kind": module | class | function | method (a slice), "object": the documented
     object's own name (a text-to-text target)}

`kind` comes from the object's dotted name: the module path is known from the standard
library's files, the rest is the object inside it; a capitalized last part is a class
(PEP 8 naming), one nested in another object a method.

    python -m pipeline.demo_labels --corpus demo/corpus --output demo/classify --top-k 8
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from collections import Counter
from pathlib import Path

OUTPUT_FILE = "stdlib_packages.jsonl"


def module_names(stdlib: Path) -> set[str]:
    """The dotted names of the standard library's modules (as the demo corpus names them)."""
    from pipeline.demo_corpus import stdlib_sources

    names = set()
    for path in stdlib_sources(stdlib):
        parts = path.relative_to(stdlib).with_suffix("").parts
        names.add(".".join(p for p in parts if p != "__init__"))
    return names


def kind_of(name: str, modules: set[str]) -> str:
    """`module`, `class`, `function` or `method` for a documented object's dotted name."""
    if name in modules:
        return "module"
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:cut]) in modules:
            inner = parts[cut:]
            if len(inner) > 1:
                return "method"
            return "class" if inner[0][:1].isupper() else "function"
    return "function"


def derive(documents: list[dict], top_k: int, modules: set[str]) -> list[dict]:
    """The labeled records of the `top_k` most frequent packages, in corpus order.

    Args:
        documents: demo corpus records {"text", "domain", "name"}.
        top_k: how many packages to keep (ties broken by name).
        modules: `module_names` of the standard library.

    Returns:
        {"text", "package", "kind", "object"} records.
    """
    counts = Counter(d["domain"] for d in documents)
    kept = {p for p, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top_k]}
    return [{"text": d["text"], "package": d["domain"], "kind": kind_of(d["name"], modules),
             "object": d["name"].rsplit(".", 1)[-1]}
            for d in documents if d["domain"] in kept]


def read_corpus(corpus: Path) -> list[dict]:
    """Every record of the `*.jsonl` files of `corpus` (a directory or one file)."""
    files = sorted(corpus.glob("*.jsonl")) if corpus.is_dir() else [corpus]
    if not files:
        raise SystemExit(f"{corpus}: no .jsonl files (build it with python -m "
                         "pipeline.demo_corpus --output DIR)")
    return [json.loads(line) for path in files
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, type=Path,
                        help="the demo corpus (directory or .jsonl file)")
    parser.add_argument("--output", required=True, type=Path, help="directory to write into")
    parser.add_argument("--top-k", type=int, default=8, help="packages to keep")
    args = parser.parse_args(argv)
    if args.top_k < 2:
        parser.error("--top-k must be at least 2")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    records = derive(read_corpus(args.corpus), args.top_k, module_names(stdlib))
    args.output.mkdir(parents=True, exist_ok=True)
    target = args.output / OUTPUT_FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                   encoding="utf-8")
    tmp.replace(target)
    packages = Counter(r["package"] for r in records)
    print(f"demo labels: {len(records)} documents of {len(packages)} packages "
          f"({dict(packages.most_common())}) -> {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
