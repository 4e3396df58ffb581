"""Warm start from an int8 export (a `push.variant: quantized` version, or a model
artifact's `saved_model_int8/`): refused in one line that names the path and says why."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from pipeline.core.errors import UsageError
from tests.compression import helpers

# One step at a negligible rate: only the start matters here.
STILL = replace(helpers.TRAIN, steps=1, warmup_steps=0, log_every=1, eval_batches=2)


def _push_int8(model_dir, serving_dir):
    """The int8 export as `push` publishes it with `push.variant: quantized`."""
    version = serving_dir / "1"
    shutil.copytree(model_dir / "saved_model_int8", version)
    training = json.loads((model_dir / "train_summary.json").read_text())
    (version / "model_card.json").write_text(json.dumps(
        {"version": 1, "variant": "quantized", "model": {"uri": str(model_dir)},
         "training": training}))
    return version


def test_an_int8_export_is_refused_as_a_warm_start_in_one_line(trained, tmp_path):
    from pipeline.core.contracts.model import resolve

    root, model_dir, _ = trained
    version = _push_int8(model_dir, tmp_path / "serving")
    for source in (version, model_dir / "saved_model_int8"):
        warm = resolve(str(source), str(tmp_path / "serving"), "base")
        with pytest.raises(UsageError) as caught:
            helpers.run_train(root, tmp_path / f"out-{source.name}", helpers.TEACHER, STILL,
                              warm_start=warm)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"train.warm_start {source}: an int8 (quantized) export")
        assert f"start from the float model at {model_dir}" in message
    # latest_pushed resolves to the same version, and is refused the same way.
    warm = resolve("latest_pushed", str(tmp_path / "serving"), "base")
    with pytest.raises(UsageError, match=r"an int8 \(quantized\) export"):
        helpers.run_train(root, tmp_path / "out-latest", helpers.TEACHER, STILL, warm_start=warm)


def test_the_float_export_beside_it_still_warm_starts(trained, tmp_path):
    from pipeline.core.contracts.model import resolve

    root, model_dir, _ = trained
    summary = helpers.run_train(root, tmp_path / "out", helpers.TEACHER, STILL,
                                warm_start=resolve(str(model_dir), "unused", "base"))
    assert summary["warm_start"]["loaded"] == "saved_model"
