"""The commands, flags and files README.md and docs/*.md tell a user to use exist: every
`lmpipe` subcommand and flag in their code, every flag of a `python -m` module they run, and
every repository path they name."""

from __future__ import annotations

import argparse
import re

import pytest

from pipeline.cli import build_parser
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _code(text: str) -> list[str]:
    """The page's shell code: fenced blocks but ini and python ones (continuation lines
    joined), and inline code spans."""
    fenced = [block for info, block in re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M)
              if info.strip() not in ("ini", "python")]
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return [re.sub(r"\\\n\s*", " ", block) for block in fenced] + \
        re.findall(r"`([^`\n]+)`", prose)


def _commands(code: list[str], program: str) -> list[tuple[str, str]]:
    """(what follows `program`, the rest of its line) for each use in the code."""
    return [(m.group(1), m.group(2)) for block in code
            for m in re.finditer(rf"(?<![\w.=-]){re.escape(program)} +([\w.]+)([^\n]*)", block)]


def _flags(rest: str) -> list[str]:
    # Up to a shell comment, a pipe or the next command of the line; `\|` is a table
    # cell's "or" (`(--prompt TEXT \| --prompts-file F)`).
    rest = re.split(r"\s#|\||&&|;|\blmpipe\b|\bpython\b", rest.replace("\\|", " "))[0]
    return re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_lmpipe_command_and_flag_the_docs_use_exists(path):
    subparsers = _subparsers()
    wrong = []
    for command, rest in _commands(_code(path.read_text(encoding="utf-8")), "lmpipe"):
        if command not in subparsers:
            wrong.append(f"lmpipe {command}: no such command")
            continue
        options = {o for a in subparsers[command]._actions for o in a.option_strings}
        wrong += [f"lmpipe {command} {flag}: no such flag" for flag in _flags(rest)
                  if flag not in options]
    assert wrong == []


def test_the_readme_command_table_lists_every_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `lmpipe (\w+)", readme, re.M)
    assert sorted(listed) == sorted(_subparsers())


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_module_and_flag_the_docs_run_exists(path):
    """`python -m bench.x --flag`: the module is in the repository and defines the flag."""
    wrong = []
    for module, rest in _commands(_code(path.read_text(encoding="utf-8")), "python -m"):
        if module in ("pytest", "components."):
            continue
        source = REPO / (module.replace(".", "/") + ".py")
        if not source.exists():
            wrong.append(f"python -m {module}: no such module")
            continue
        text = source.read_text(encoding="utf-8")
        wrong += [f"python -m {module} {flag}: not among its arguments" for flag in _flags(rest)
                  if f'"{flag}"' not in text]
    assert wrong == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_repository_path_the_docs_name_exists(path):
    """`components/transform/examples.py`, `bench/measurements/tuning/`, `configs/vertex.yaml`,
    `bench/measurements/tuning/table-full-500k-*.json` (a glob matches a file): the paths a
    reader is sent to (what commands write, such as `runs/`, aside)."""
    made = {"runs", "demo", "build"}  # what commands write (.gitignore), absent from a clone
    tops = sorted(p.name for p in REPO.iterdir() if p.is_dir() and p.name not in made
                  and not p.name.startswith(".") and not p.name.endswith(".egg-info"))
    missing = []
    for span in re.findall(r"`([^`\n]+)`", path.read_text(encoding="utf-8")):
        for match in re.finditer(rf"(?<![\w/.<$-])((?:{'|'.join(tops)})/[\w./*\[\]-]*)", span):
            name = match.group(1).rstrip(".")
            if not (any(REPO.glob(name)) if re.search(r"[*\[]", name) else (REPO / name).exists()):
                missing.append(name)
    assert missing == []


def test_the_defaults_the_readme_states_for_flags_are_the_parsers():
    """`--max-tokens 64` after "defaults" in a command's row is that flag's default."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    subparsers, stated = _subparsers(), 0
    for command, row in re.findall(r"^\| `lmpipe (\w+)[^|]*(?:\\\|[^|]*)*\|(.*)$", readme, re.M):
        tail = row.split("defaults ", 1)[1] if "defaults " in row else ""
        for flag, value in re.findall(r"`(--[\w-]+) ([^`]+)`", tail):
            action = next(a for a in subparsers[command]._actions if flag in a.option_strings)
            assert action.type(value) == action.default, (command, flag)
            stated += 1
    assert stated >= 6


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_link_between_the_pages_resolves(path):
    """`[docs/tasks.md](docs/tasks.md)`, `(#run-on-vertex-ai)`: the file and the heading exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
        if re.match(r"\w+://", target):
            continue
        name, _, fragment = target.partition("#")
        page = (path.parent / name).resolve() if name else path
        if not page.exists():
            broken.append(target)
        elif fragment and page.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", page.read_text(encoding="utf-8"), re.M)
            if fragment not in {_anchor(h) for h in headings}:
                broken.append(target)
    assert broken == []
