"""Build the demo corpus from text every machine has: the Python standard library's docstrings.

One JSONL document per documented module, class or function, with its top-level package
as `domain` (so evaluation can slice by it, and fine-tuning can predict it). Sources are
parsed with `ast`, never imported, so building the corpus runs no library code.

    python -m pipeline.demo_corpus --output demo/corpus
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import sysconfig
from pathlib import Path

SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
             "lib2to3", "ensurepip", "turtledemo", "pydoc_data"}
MIN_CHARS = 40


def stdlib_sources(stdlib: Path) -> list[Path]:
    """The standard library's `.py` files, in a fixed order, without tests or vendored code."""
    files = []
    for directory, subdirs, names in os.walk(stdlib):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS and not d.startswith("."))
        files.extend(Path(directory, n) for n in sorted(names) if n.endswith(".py"))
    return files


def docstrings(path: Path, stdlib: Path) -> list[dict]:
    """The documents (text, domain, name) of one source file."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return []
    relative = path.relative_to(stdlib).with_suffix("")
    module = ".".join(p for p in relative.parts if p != "__init__")
    domain = module.split(".")[0].lstrip("_") or "builtins"
    documents = []
    for node, name in _documented(tree, module):
        text = ast.get_docstring(node, clean=True)
        if text and len(text) >= MIN_CHARS:
            documents.append({"text": text, "domain": domain, "name": name})
    return documents


def _documented(tree: ast.Module, module: str):
    yield tree, module
    stack = [(tree, module)]
    while stack:
        parent, prefix = stack.pop()
        for node in parent.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{node.name}"
                yield node, name
                if isinstance(node, ast.ClassDef):
                    stack.append((node, name))


def build(output: Path, max_documents: int | None = None) -> dict:
    """Write `stdlib_docstrings.jsonl` under `output`.

    Args:
        output: the directory to write into (created).
        max_documents: keep at most this many documents (the first ones, in file order).

    Returns:
        Counts: documents, characters, domains, and the file written.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    output.mkdir(parents=True, exist_ok=True)
    target = output / "stdlib_docstrings.jsonl"
    tmp = target.with_suffix(".jsonl.tmp")
    count = chars = 0
    domains = set()
    with tmp.open("w", encoding="utf-8") as f:
        for path in stdlib_sources(stdlib):
            for doc in docstrings(path, stdlib):
                if max_documents is not None and count >= max_documents:
                    break
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                count += 1
                chars += len(doc["text"])
                domains.add(doc["domain"])
    tmp.replace(target)
    return {"documents": count, "characters": chars, "domains": len(domains), "file": str(target)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="directory to write the corpus into")
    parser.add_argument("--max-documents", type=int, default=None)
    args = parser.parse_args(argv)
    result = build(Path(args.output), args.max_documents)
    print(f"demo corpus: {result['documents']} documents, {result['characters']} characters, "
          f"{result['domains']} domains -> {result['file']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
