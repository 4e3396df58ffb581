"""Tiny random checkpoints and the reference's outputs on them, made by `.venv-ref`.

The reference side (`reference.py`) runs in its own virtual environment (torch,
transformers; `make reference`), as a subprocess: lmpipe's environment never imports
torch. Without `.venv-ref` these tests fail under CI (`make test` creates it first) and
are skipped, with the reason, on a developer's machine that has not run `make reference`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, tiny_documents

REF_PYTHON = REPO / ".venv-ref" / "bin" / "python"
REFERENCE = Path(__file__).resolve().parent / "reference.py"

# Pieces of text that tokenizers disagree on when they are wrong: Unicode (accents,
# combining marks, CJK, RTL, Cyrillic), whitespace runs, tabs, CRLF, emoji with
# modifiers, code, contractions, digits, a special token's text.
FRAGMENTS = ["Hello", " world", "  two  spaces", "\ttab", "\n\nnewlines\n", "   ", "Café",
             "naïve", "日本語", "中文文本", "🎉", "👍🏽", "❤️", "def f(x):\n    return x*2",
             "a_b-c.d/e", "it's", "they'll", "WE'VE", "I'M", "12345", "3.14", "$%^&*",
             "  \u00a0nbsp", "e\u0301", "Ω≈ç√∫", "  trailing ", "x" * 30, "<|endoftext|>",
             "\r\n", "مرحبا", "Привет", "🙂🙃", "for (int i = 0; i < n; ++i) { s += a[i]; }"]


def varied_strings(count: int = 300, seed: int = 0) -> list[str]:
    """`count` strings: every fragment alone, then random runs of one to five of them."""
    rng = random.Random(seed)
    strings = list(FRAGMENTS)
    while len(strings) < count:
        strings.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 5))))
    return strings


def require_reference() -> Path:
    if REF_PYTHON.exists():
        return REF_PYTHON
    message = (f"{REF_PYTHON} is missing: `make reference` creates the reference environment "
               "(torch, transformers) the checkpoint tests compare against")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_reference(*args) -> None:
    result = subprocess.run([str(require_reference()), str(REFERENCE), *map(str, args)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1",
                                 "TRANSFORMERS_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


class Reference:
    """A checkpoint made by the reference and what the reference computes on `strings`."""

    def __init__(self, directory: Path, expected: Path):
        self.directory = directory
        arrays = np.load(expected)
        self.strings = json.loads(str(arrays["strings"]))
        lengths, flat = arrays["ids_lengths"], arrays["ids_flat"]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = [flat[starts[i]:starts[i + 1]].tolist() for i in range(len(lengths))]
        framed = lengths + 2  # [eos] + ids + [eos], as the reference ran them
        logit_starts = np.concatenate([[0], np.cumsum(framed)])
        logits = arrays["logits_flat"]  # each read of an npz entry loads it again
        self.logits = [logits[logit_starts[i]:logit_starts[i + 1]] for i in range(len(lengths))]
        self.nll = arrays["nll"]
        self.bos, self.eos = (int(i) for i in arrays["bos_eos"])


@pytest.fixture(scope="session")
def make_reference(tmp_path_factory):
    """family -> `Reference` (made once per test session)."""
    made = {}

    def make(family: str) -> Reference:
        if family not in made:
            root = tmp_path_factory.mktemp(f"reference_{family}")
            corpus = root / "corpus.txt"
            texts = [d["text"] for d in tiny_documents(3)] + varied_strings(60, seed=1)
            corpus.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
            strings = root / "strings.json"
            strings.write_text(json.dumps(varied_strings()), encoding="utf-8")
            run_reference("make", family, corpus, root / "checkpoint", strings,
                          root / "expected.npz")
            made[family] = Reference(root / "checkpoint", root / "expected.npz")
        return made[family]

    return make
