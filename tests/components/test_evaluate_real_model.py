"""evaluate on the trainer's real export (`models/export.py`): TFMA's perplexity, bits per
byte and accuracy equal a direct computation with the Keras model over the same windows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from components import evaluate
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm
from tests.conftest import build_config, tiny_raw_config, tiny_documents
from tests.models import lm_data
from tests.models.conftest import tiny_lm

WINDOW = lm_data.SEQUENCE_LENGTH


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tokenizer, packed eval windows, eval documents and a tiny exported GPT."""
    from models.export import save_export
    from models.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("real")
    lm_data.write_tokenizer(root / "tokenizer")
    records = lm_data.write_examples(root / "examples", root / "tokenizer", length=WINDOW)["eval"]
    spec_path = root / "examples" / "feature_spec.json"
    spec = json.loads(spec_path.read_text())
    spec["features"] = {"token_ids": {"shape": [WINDOW]}, "segment_ids": {"shape": [WINDOW]},
                        "num_bytes": {"shape": [1]}, "domain": {"shape": [1]}}
    spec_path.write_text(json.dumps(spec))
    documents = tiny_documents(copies=1)
    lm.write_documents(root / "documents", [documents[0], documents[4]])
    model = tiny_lm(seed=3)
    model({"token_ids": np.zeros((1, WINDOW), np.int32), "segment_ids": np.ones((1, WINDOW), np.int32)})
    save_export(model, load_tokenizer(str(root / "tokenizer")), WINDOW,
                str(root / "model" / "saved_model"))
    return {"root": root, "records": records, "model": model}


def _direct_metrics(model, records: list[dict]) -> dict:
    """Perplexity, bits per byte and accuracy from the Keras model's logits in NumPy."""
    tokens = np.stack([r["token_ids"] for r in records]).astype(np.int32)
    segments = np.stack([r["segment_ids"] for r in records]).astype(np.int32)
    logits = np.asarray(model({"token_ids": tokens, "segment_ids": segments}))
    targets, weights = lm_data.reference_targets(tokens, segments)
    nll = float((lm_data.reference_nll(logits, targets) * weights).sum())
    count = float(weights.sum())
    correct = float(((logits.argmax(-1) == targets) * weights).sum())
    num_bytes = float(sum(r["num_bytes"] for r in records))
    return {"perplexity": math.exp(nll / count), "bits_per_byte": nll / math.log(2) / num_bytes,
            "token_accuracy": correct / count, "token_count": count,
            "unigram_perplexity": lm.unigram_perplexity(records),
            "example_count": float(len(records))}


def test_tfma_metrics_equal_the_keras_model_and_samples_come_from_generate(exported, tmp_path):
    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["evaluation"] = {"num_samples": 2, "sample_prompt_words": 3, "sample_max_tokens": 5}
    config = build_config(raw)
    root = exported["root"]
    inputs = {"model": lm.artifact("Model", root / "model", "fp-model"),
              "examples": lm.artifact("Examples", root / "examples", "fp-examples"),
              "documents": lm.artifact("Documents", root / "documents", "fp-documents"),
              "tokenizer": lm.artifact("Tokenizer", root / "tokenizer", "fp-tokenizer"),
              "baseline": None}
    outputs = {name: tmp_path / name for name in evaluate.SPEC.outputs}
    for path in outputs.values():
        path.mkdir()
    evaluate.run(inputs, {k: str(v) for k, v in outputs.items()},
                 Runtime(run_id="real", root=str(tmp_path), beam_args=config.pipeline.beam_args),
                 evaluation=config.evaluation, push=config.push)
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    expected = _direct_metrics(exported["model"], exported["records"])
    for name, value in expected.items():
        assert metrics["overall"][name] == pytest.approx(value, rel=1e-4), name
    spans = {lm.longest_span(r["segment_ids"]) for r in exported["records"]}
    assert {name for name in metrics["slices"] if name.startswith("length_bucket=")} == {
        f"length_bucket={'0-31' if max(spans) < 32 else '32-63'}"}
    samples = json.loads((outputs["evaluation"] / "samples.json").read_text())
    assert [s["domain"] for s in samples["samples"]] == ["math", "os"]
    for sample in samples["samples"]:
        assert sample["prompt"] == " ".join(sample["prompt"].split()[:3])
        assert isinstance(sample["greedy"], str) and isinstance(sample["sampled"], str)
    blessing = json.loads((outputs["blessing"] / "blessing.json").read_text())
    assert blessing["lineage"]["tokenizer"] == {"uri": str(root / "tokenizer"),
                                                "fingerprint": "fp-tokenizer"}
