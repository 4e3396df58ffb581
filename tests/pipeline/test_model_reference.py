"""A model reference read back from a model card (`pipeline/core/contracts/model.py`)."""

from __future__ import annotations

import os

import pytest

from pipeline.core.contracts.model import recorded_reference


@pytest.mark.parametrize("uri, expected", [
    ("runs/demo/train/abc/model", os.path.abspath("runs/demo/train/abc/model")),
    ("/data/models/lm", "/data/models/lm"),
    ("gs://bucket/models/lm", "gs://bucket/models/lm"),
    ("<redacted>", "<redacted>"),
    ("", ""),
])
def test_a_card_path_is_made_absolute_against_the_working_directory(uri, expected):
    recorded = {"type": "Model", "uri": uri, "fingerprint": "f" * 64,
                "properties": {"requested": "latest_pushed", "version": 3}}
    artifact = recorded_reference(recorded)
    assert artifact.uri == expected
    assert (artifact.fingerprint, artifact.properties) == (recorded["fingerprint"],
                                                           recorded["properties"])
