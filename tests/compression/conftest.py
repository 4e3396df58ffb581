"""One trained model shared by the compression tests: pruned, with its int8 export (weight
only; the release test exports a student in the dynamic-range mode)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.core.config import PruneConfig
from tests.compression import helpers

# Pruning from step 2 to 10, updating every 4 steps (2, 6, 10), to 50%.
PRUNE = PruneConfig(target_sparsity=0.5, begin_step=2, end_step=10, frequency=4)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(root with tokenizer, examples and documents; the model artifact; its records)."""
    root = tmp_path_factory.mktemp("compression")
    records = helpers.write_inputs(root)
    train = replace(helpers.TRAIN, steps=14, prune=PRUNE, quantize="int8_weights")
    helpers.run_train(root, root / "model", helpers.TEACHER, train)
    return root, root / "model", records
