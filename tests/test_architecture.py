"""The layering of `docs/architecture.md`, enforced on the import graph of the product code.

Imports inside functions count: they tie modules together just the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.code_shape import LONG_FUNCTION, cycles, import_graph, long_functions
from tests.conftest import REPO

STAGES = ("ingest", "tokenizer", "labels", "transform", "validate", "tune", "train", "evaluate",
          "push")
# Stage -> the other stages it may import: only where data flows from one to the other and
# the code is the same (the tuner trains its trials with the trainer's pieces).
DATA_FLOWS = {"tune": {"train"}}


def layer(module: str) -> str:
    """`core`, `models`, `shared`, a stage's name (`tuning/` is the tune stage's) or
    `orchestration`."""
    parts = module.split(".")
    if parts[0] == "pipeline":
        return "core" if parts[1:2] == ["core"] else "orchestration"
    if parts[0] == "components":
        return parts[1] if len(parts) > 1 else "orchestration"
    return {"models": "models", "tuning": "tune"}[parts[0]]


def may_import(importer: str, imported: str) -> bool:
    """Whether a module of layer `importer` may import one of layer `imported`."""
    if importer == imported or importer == "orchestration":
        return True
    if imported == "orchestration":
        return False
    if importer == "core":
        return False
    if importer == "models":
        return imported == "core"
    if importer == "shared":
        return imported in ("core", "models")
    return imported in ("core", "models", "shared") or imported in DATA_FLOWS.get(importer, ())


def violations(graph: dict[str, set[str]]) -> list[str]:
    """`importer -> imported` for every import the layering forbids."""
    return sorted(f"{module} -> {target}" for module, targets in graph.items()
                  for target in targets if not may_import(layer(module), layer(target)))


@pytest.fixture(scope="module")
def graph():
    return import_graph(Path(REPO))


def test_every_package_is_a_known_layer(graph):
    assert {layer(module) for module in graph} <= {"core", "models", "shared", "orchestration",
                                                    *STAGES}


def test_no_import_breaks_the_layering(graph):
    assert violations(graph) == []


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_no_function_is_longer_than_the_limit():
    assert long_functions(Path(REPO)) == []


def test_the_checks_see_what_they_must_refuse():
    bad = {"pipeline.core.artifacts": {"components.train.session"},
           "components.train.session": {"pipeline.dag", "components.evaluate.report"},
           "components.evaluate.report": {"components.evaluate.slicing"},
           "components.evaluate.slicing": {"components.evaluate.report"},
           "components.tune": {"components.train.loop", "tuning.trial"},
           "models.gpt": {"pipeline.core.errors"}}
    assert violations(bad) == [
        "components.train.session -> components.evaluate.report",
        "components.train.session -> pipeline.dag",
        "pipeline.core.artifacts -> components.train.session"]
    assert cycles(bad) == [["components.evaluate.report", "components.evaluate.slicing"]]


def test_the_length_check_counts_a_long_function(tmp_path):
    package = tmp_path / "models"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(LONG_FUNCTION))
    (package / "long.py").write_text(f"def long():\n{body}\n")
    (package / "short.py").write_text("def short():\n    return 1\n")
    assert long_functions(tmp_path) == [("models.long:long", LONG_FUNCTION + 1)]
