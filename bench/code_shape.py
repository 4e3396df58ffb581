"""The product code's size and shape: lines, modules, import cycles, long functions.

    python -m bench.code_shape            # pipeline/ components/ models/ tuning/

Counts what `docs/architecture.md` promises: no import cycle between project modules
(imports inside functions count too: they still tie the modules together), and no
function longer than 60 lines. Lines are non-blank lines of `.py` files, tests and
bench excluded.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGES = ("pipeline", "components", "models", "tuning")
LONG_FUNCTION = 60


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the product packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (at any depth of its code)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from package import module` depends on that module; a package's light
            # `__init__` that it also runs is not counted, or every stage package whose
            # `__init__` imports its own modules lazily would be a cycle.
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                          for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def long_functions(root: Path, limit: int = LONG_FUNCTION) -> list[tuple[str, int]]:
    """(module:function, lines) for every function longer than `limit` lines."""
    found = []
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append((f"{name}:{node.name}", length))
    return sorted(found, key=lambda item: -item[1])


def code_lines(root: Path) -> int:
    """Non-blank lines of the product modules."""
    return sum(sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
               for path in modules(root).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the repository (default: here)")
    root = Path(parser.parse_args(argv).root).resolve()
    graph = import_graph(root)
    found = cycles(graph)
    long = long_functions(root)
    print(f"modules: {len(graph)}")
    print(f"lines of code (non-blank): {code_lines(root)}")
    print(f"import cycles: {len(found)}" + "".join(f"\n  {len(c)}: {' '.join(c)}" for c in found))
    print(f"functions over {LONG_FUNCTION} lines: {len(long)}"
          + "".join(f"\n  {name} ({n})" for name, n in long))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
