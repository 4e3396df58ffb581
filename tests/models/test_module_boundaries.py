"""No module of `models/` uses another `models/` module's private (leading-underscore)
names: what modules share is public, so each module's private parts can change on their
own. (Private attributes of third-party classes a module subclasses, e.g. keras-hub's
`MaskedLMHead`, are that module's own business.)"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

MODELS = Path(REPO) / "models"


def _own_names(tree: ast.Module) -> set[str]:
    """Every name a module defines: functions, classes, methods, assigned attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(path: Path) -> set[str]:
    return _own_names(ast.parse(path.read_text(encoding="utf-8")))


def _borrowed_private_names(path: Path, others: set[str]) -> list[str]:
    """Private names `path` uses that other modules (defining `others`) define and it does not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _own_names(tree)
    borrowed = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            borrowed += [f"from {node.module} import {a.name}" for a in node.names
                         if _private(a.name)]
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            name = node.attr
            if _private(name) and name not in own and name in others:
                borrowed.append(f"line {node.lineno}: .{name}")
    return borrowed


def test_models_modules_use_no_private_name_of_another_module():
    paths = sorted(MODELS.glob("*.py"))
    defined = {path: {n for n in _defined(path) if _private(n)} for path in paths}
    found = {}
    for path in paths:
        others = set().union(*(names for other, names in defined.items() if other != path))
        found[path.name] = _borrowed_private_names(path, others)
    assert {name: uses for name, uses in found.items() if uses} == {}


def test_the_check_sees_a_borrowed_private_method(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from models.export import LanguageModelExport\n\n"
                      "class Child(LanguageModelExport):\n"
                      "    def go(self):\n        return self._decode(1)\n")
    assert _borrowed_private_names(sample, {"_decode"}) == ["line 5: ._decode"]
    assert _borrowed_private_names(sample, set()) == []
