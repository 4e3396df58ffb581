"""What a component declares, and how its code version and cache key are computed."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.core.artifacts import Artifact
from pipeline.core.configio import to_dict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Packages whose source is part of a component's code version: the stages, the models, the
# tuner and the artifact contracts. The orchestration (the rest of `pipeline`) and the config
# tree are left out on purpose: they do not change what a component computes, and the
# config reaches the cache key through the component's config sections.
VERSIONED_PACKAGES = ("components", "models", "tuning", "pipeline.core")
UNVERSIONED_PACKAGES = ("pipeline.core.config", "pipeline.core.configio")


@dataclass(frozen=True)
class ComponentSpec:
    """The typed interface of a component.

    Attributes:
        name: the component's name, also its directory under the pipeline root.
        module: the module holding `run(inputs, outputs, runtime, **sections)`.
        inputs: input name -> artifact type, for inputs produced by other components.
        outputs: output name -> artifact type.
        config: the config sections the component reads (and that enter its cache key).
        optional_inputs: inputs that may be absent (e.g. tuned hyperparameters).
        resolvers: input name -> function(config, inputs) -> Artifact | None, for inputs
            that come from outside the DAG (raw files, the model in service).
        uses_resolvers: function(config) -> bool, whether this config makes any resolver
            read outside the DAG (an orchestrator's cache cannot see those inputs change);
            None means whenever there are resolvers.
    """

    name: str
    module: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    config: tuple[str, ...]
    optional_inputs: tuple[str, ...] = ()
    resolvers: dict[str, Callable] = field(default_factory=dict)
    uses_resolvers: Callable | None = None

    def load(self):
        """Import the component's module (heavy imports happen only here)."""
        return importlib.import_module(self.module)

    def reads_outside_dag(self, config) -> bool:
        """Whether, with this config, the component reads inputs from outside the DAG."""
        if self.uses_resolvers is None:
            return bool(self.resolvers)
        return self.uses_resolvers(config)

    def sections(self, config) -> dict:
        """The config sections this component reads, by name."""
        return {name: getattr(config, name) for name in self.config}


@functools.lru_cache(maxsize=None)
def code_version(module: str) -> str:
    """Hash of the source of `module` and every project module it imports, transitively."""
    digest = hashlib.sha256()
    for path in sorted(_import_closure(module)):
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _import_closure(module: str) -> set[Path]:
    seen: set[Path] = set()
    pending = [module]
    while pending:
        path = _module_path(pending.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = path.parent.relative_to(PROJECT_ROOT).as_posix().replace("/", ".")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                pending.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                pending.append(base)
                pending.extend(f"{base}.{alias.name}" for alias in node.names)
    return seen


def _module_path(module: str) -> Path | None:
    if not _within(module, VERSIONED_PACKAGES) or _within(module, UNVERSIONED_PACKAGES):
        return None
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def cache_key(spec: ComponentSpec, config, inputs: dict[str, Artifact | None]) -> str:
    """The key that decides whether a published execution can be reused.

    It covers the code version, the component's resolved config sections and the
    fingerprints of its inputs.
    """
    payload = {
        "component": spec.name,
        "code": code_version(spec.module),
        "config": {name: to_dict(section) for name, section in spec.sections(config).items()},
        "inputs": {name: (a.fingerprint if a else None) for name, a in sorted(inputs.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
