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
                 evaluation=config.evaluation, task=config.task, push=config.push)
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


@pytest.fixture(scope="module")
def exported_bert(exported):
    """A tiny BERT exported beside the GPT, with the train summary its trainer writes."""
    from models.export import save_export
    from models.tokenizer import load_tokenizer
    from tests.models.conftest import tiny_model

    root = exported["root"]
    model = tiny_model("bert", seed=5, max_sequence_length=WINDOW)
    model({"token_ids": np.zeros((1, WINDOW), np.int32), "segment_ids": np.ones((1, WINDOW), np.int32)})
    save_export(model, load_tokenizer(str(root / "tokenizer")), WINDOW,
                str(root / "bert" / "saved_model"))
    (root / "bert" / "train_summary.json").write_text(json.dumps(
        {"model": {"family": "bert", "objective": "auto"}, "task": {"type": "lm"}}))
    return model


def _direct_masked_metrics(model, tokenizer_dir: Path, records: list[dict]) -> dict:
    """Masked-token perplexity and accuracy from the Keras model, with the export's fixed
    corruption (`SCORE_SEED`), summed here in NumPy."""
    from models.export import SCORE_SEED
    from models.objectives import MaskedLMObjective
    from pipeline.core.contracts.tokenizer import read_info

    info = read_info(str(tokenizer_dir))
    objective = MaskedLMObjective(info.vocab_size, info.special_tokens)
    batch = {"token_ids": np.stack([r["token_ids"] for r in records]).astype(np.int32),
             "segment_ids": np.stack([r["segment_ids"] for r in records]).astype(np.int32)}
    inputs, targets, weights = objective.prepare(batch, np.array(SCORE_SEED, np.int32))
    logits = np.asarray(model(inputs), np.float64)
    targets, weights = np.asarray(targets), np.asarray(weights)
    nll = float((lm_data.reference_nll(logits, targets) * weights).sum())
    count = float(weights.sum())
    correct = float(((logits.argmax(-1) == targets) * weights).sum())
    return {"perplexity": math.exp(nll / count), "token_accuracy": correct / count,
            "token_count": count}


def test_a_masked_lm_reports_masked_token_metrics_and_no_bits_per_byte(exported, exported_bert,
                                                                       tmp_path):
    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["evaluation"] = {"num_samples": 0, "max_bits_per_byte_increase": 0.005,
                         "max_slice_bits_per_byte_increase": 0.01, "slice_features": ["domain"]}
    config = build_config(raw)
    root = exported["root"]
    # The model in service is the same BERT: the bits-per-byte change gates would apply.
    inputs = {"model": lm.artifact("Model", root / "bert", "fp-bert"),
              "examples": lm.artifact("Examples", root / "examples", "fp-examples"),
              "documents": None, "tokenizer": None,
              "baseline": lm.artifact("Model", root / "bert" / "saved_model", "fp-base")}
    outputs = {name: tmp_path / name for name in evaluate.SPEC.outputs}
    for path in outputs.values():
        path.mkdir()
    evaluate.run(inputs, {k: str(v) for k, v in outputs.items()},
                 Runtime(run_id="bert", root=str(tmp_path), beam_args=config.pipeline.beam_args),
                 evaluation=config.evaluation, task=config.task, push=config.push)
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    verdict = json.loads((outputs["blessing"] / "blessing.json").read_text())

    assert metrics["objective"] == verdict["objective"] == "masked"
    expected = _direct_masked_metrics(exported_bert, root / "tokenizer", exported["records"])
    for name, value in expected.items():
        assert metrics["overall"][name] == pytest.approx(value, rel=1e-4), name
    # About 15% of the real tokens are scored, not all of them.
    real = sum(int(r["segment_ids"].astype(bool).sum()) for r in exported["records"])
    assert 0.05 * real < metrics["overall"]["token_count"] < 0.3 * real
    for document in (metrics["overall"], metrics["slices"]["domain=test"],
                     metrics["baseline"]["overall"]):
        assert "bits_per_byte" in document and document["bits_per_byte"] is None
    assert "bits_per_byte" not in metrics["comparison"]
    assert metrics["comparison"]["perplexity"]["change"] == 0.0
    assert verdict["blessed"] is True and verdict["failures"] == []
    assert [(s["setting"], s["value"]) for s in verdict["skipped_thresholds"]] == [
        ("evaluation.max_bits_per_byte_increase", 0.005),
        ("evaluation.max_slice_bits_per_byte_increase", 0.01)]
    summary = evaluate.summary({name: lm.artifact("x", path, "fp") for name, path in outputs.items()})
    assert summary["eval_bits_per_byte"] is None
    assert summary["eval_perplexity"] == metrics["overall"]["perplexity"]
    page = (outputs["evaluation"] / "report.html").read_text()
    assert 'data-objective="masked"' in page and "masked-token perplexity" in page


def _with_golden_split(examples: Path, target: Path) -> None:
    """A copy of `examples` whose golden split holds the eval split's windows."""
    import shutil

    shutil.copytree(examples, target)
    spec = json.loads((target / "feature_spec.json").read_text())
    names = []
    for shard in sorted(target.glob("eval-*.tfrecord")):
        name = shard.name.replace("eval-", "golden-", 1)
        shutil.copy(shard, target / name)
        names.append(name)
    spec["splits"] = {"golden": {"shards": names}}
    (target / "feature_spec.json").write_text(json.dumps(spec))


def test_the_golden_set_is_measured_as_the_eval_split_is_and_can_gate(exported, tmp_path):
    """The golden split goes through the eval split's path: the same windows give the same
    TFMA numbers, equal to the direct computation; `max_golden_perplexity` gates on them."""
    root = exported["root"]
    _with_golden_split(root / "examples", tmp_path / "examples")
    raw = tiny_raw_config(tmp_path, Path("corpus"))
    raw["evaluation"] = {"num_samples": 0, "max_golden_perplexity": 1.5}
    config = build_config(raw)
    inputs = {"model": lm.artifact("Model", root / "model", "fp-model"),
              "examples": lm.artifact("Examples", tmp_path / "examples", "fp-examples"),
              "baseline": None}
    outputs = {name: tmp_path / name for name in evaluate.SPEC.outputs}
    for path in outputs.values():
        path.mkdir()
    properties = evaluate.run(
        inputs, {k: str(v) for k, v in outputs.items()},
        Runtime(run_id="golden", root=str(tmp_path), beam_args=config.pipeline.beam_args),
        evaluation=config.evaluation, task=config.task, push=config.push)
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    expected = _direct_metrics(exported["model"], exported["records"])
    for name in ("perplexity", "bits_per_byte", "token_accuracy", "token_count"):
        assert metrics["golden"]["overall"][name] == pytest.approx(expected[name], rel=1e-4)
        assert metrics["golden"]["overall"][name] == pytest.approx(metrics["overall"][name],
                                                                   rel=1e-6)
    assert set(metrics["golden"]["slices"]) == set(metrics["slices"])
    assert (outputs["evaluation"] / "golden" / "tfma").is_dir()
    blessing = json.loads((outputs["blessing"] / "blessing.json").read_text())
    assert not blessing["blessed"] and not properties["blessing"]["blessed"]
    [failure] = blessing["failures"]
    assert failure["examples"] == "golden" and failure["metric"] == "perplexity"
    assert failure["candidate"] == pytest.approx(expected["perplexity"], rel=1e-4)
    summary = evaluate.summary({name: lm.artifact("x", outputs[name], "fp")
                                for name in outputs})
    assert summary["golden_perplexity"] == pytest.approx(expected["perplexity"], rel=1e-4)
    assert summary["golden_bits_per_byte"] == pytest.approx(expected["bits_per_byte"], rel=1e-4)
