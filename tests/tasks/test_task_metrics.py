"""TFMA's task metrics against independent computations, and the task gate both ways.

Each test runs the real TFMA pipeline (Beam DirectRunner) over a hand-built SavedModel
(`task_fixtures`) whose outputs NumPy, sacrebleu and rouge_score can reproduce.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.config import EvaluationConfig, TaskConfig
from tests.tasks import task_fixtures

LABELS = ["asyncio", "email", "logging", "xml"]
BEAM_ARGS = ("--direct_running_mode=in_memory",)


def _evaluate(tmp_path, name: str, task: TaskConfig, model: str, examples, labels: list[str]):
    """TFMA as evaluate runs it for `task.type`: the metrics document and the verdict."""
    from components.evaluate import analysis, blessing, tasks

    evaluation = EvaluationConfig(batch_size=16, slice_features=("domain",))
    task_type = tasks.TASK_TYPES[task.type](task, labels)
    output = tmp_path / name
    analysis.run_tfma(task_type.eval_config(evaluation, with_baseline=False), candidate=model,
                      baseline=None, examples_dir=str(examples), output_dir=str(output),
                      beam_args=BEAM_ARGS, batch_size=16)
    metrics = task_type.metrics_document(str(output), None, ())
    verdict = blessing.decide(analysis.read_validation(str(output)), metrics,
                              slice_gate_min_examples=20, baseline=None)
    return metrics, verdict


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("classification")
    table = np.random.default_rng(7).normal(size=(64, len(LABELS))) * 2.0
    records = task_fixtures.classification_records(table, 240, seed=3)
    examples = task_fixtures.write_examples(tmp_path / "examples", records,
                                            {"type": "classification", "labels": LABELS})
    model = str(task_fixtures.write_table_classifier(tmp_path / "model", table))
    return tmp_path, table, records, examples, model


def test_classification_metrics_match_a_direct_count(classification):
    tmp_path, table, records, examples, model = classification
    reference = task_fixtures.reference_classification(table, records)
    assert 0.3 < reference["accuracy"] < 0.95  # informative, not degenerate
    metrics, verdict = _evaluate(tmp_path, "tfma", TaskConfig(type="classification"), model,
                                 examples, LABELS)
    overall = metrics["overall"]
    assert overall["example_count"] == len(records)
    for name in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert overall[name] == pytest.approx(reference[name], abs=1e-9), name
    assert overall["macro_auc"] == pytest.approx(reference["macro_auc"], abs=1e-3)
    for c, label in enumerate(LABELS):
        values = metrics["classes"][label]
        for name in ("precision", "recall", "f1", "support"):
            assert values[name] == pytest.approx(reference[name][c], abs=1e-9), (label, name)
        assert values["auc"] == pytest.approx(reference["auc"][c], abs=1e-3), label
    assert metrics["confusion"]["labels"] == LABELS
    np.testing.assert_array_equal(np.array(metrics["confusion"]["matrix"]),
                                  reference["confusion"])
    # A slice is the same count over its own examples.
    domain_a = [r for r in records if r["domain"] == "a"]
    sliced = task_fixtures.reference_classification(table, domain_a)
    assert metrics["slices"]["domain=a"]["accuracy"] == pytest.approx(sliced["accuracy"])
    assert metrics["slices"]["domain=a"]["example_count"] == len(domain_a)
    assert metrics["slices"]["domain=a"]["classes"]["xml"]["f1"] == pytest.approx(sliced["f1"][3])
    assert verdict["blessed"] is True and verdict["failures"] == []


def test_the_classification_gate_blesses_above_and_refuses_below_its_thresholds(classification):
    tmp_path, table, records, examples, model = classification
    reference = task_fixtures.reference_classification(table, records)
    passing = TaskConfig(type="classification", min_accuracy=reference["accuracy"] - 0.01,
                         min_macro_f1=reference["macro_f1"] - 0.01)
    _, verdict = _evaluate(tmp_path, "pass", passing, model, examples, LABELS)
    assert verdict["blessed"] is True and verdict["failures"] == []
    failing = TaskConfig(type="classification", min_accuracy=reference["accuracy"] - 0.01,
                         min_macro_auc=min(1.0, reference["macro_auc"] + 0.01))
    _, verdict = _evaluate(tmp_path, "fail", failing, model, examples, LABELS)
    assert verdict["blessed"] is False
    assert [(f["metric"], f["slice"], f["kind"]) for f in verdict["failures"]] == [
        ("macro_auc", "overall", "value")]
    assert verdict["failures"][0]["candidate"] == pytest.approx(reference["macro_auc"], abs=1e-3)


def test_text_metrics_match_sacrebleu_and_rouge_score(tmp_path):
    import sacrebleu
    from rouge_score import rouge_scorer

    pairs = [("the cat sat on the mat", "the cat sat on the mat"),
             ("a dog ran in the park today", "a dog walked in the park"),
             ("Return the square root of x.", "Return the square root of x."),
             ("  spaces around  ", "spaces around"),
             ("completely different words", "nothing alike here"),
             ("unicode ünïcode text", "unicode text")]
    records = []
    for i, (prediction, reference) in enumerate(pairs):
        records.append({"token_ids": np.zeros(task_fixtures.WINDOW, np.int64),
                        "segment_ids": np.zeros(task_fixtures.WINDOW, np.int64),
                        "num_bytes": [1], "target_start": [1], "input_text": prediction,
                        "target_text": reference, "domain": "ab"[i % 2],
                        "length_bucket": "0-127"})
    examples = task_fixtures.write_examples(tmp_path / "examples", records,
                                            {"type": "text_to_text"})
    model = str(task_fixtures.write_echo_generator(tmp_path / "model"))
    task = TaskConfig(type="text_to_text", min_exact_match=0.9)
    metrics, verdict = _evaluate(tmp_path, "tfma", task, model, examples, [])
    hypotheses = [p.strip() for p, _ in pairs]
    references = [r.strip() for _, r in pairs]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)])
    exact = np.mean([h == r for h, r in zip(hypotheses, references)])
    overall = metrics["overall"]
    assert overall["bleu"] == pytest.approx(bleu, abs=1e-9)
    assert overall["rouge_l"] == pytest.approx(rouge, abs=1e-9)
    assert overall["exact_match"] == pytest.approx(exact) == 0.5
    domain_b = [1, 3, 5]
    assert metrics["slices"]["domain=b"]["exact_match"] == pytest.approx(
        np.mean([hypotheses[i] == references[i] for i in domain_b]))
    assert verdict["blessed"] is False
    assert [f["metric"] for f in verdict["failures"]] == ["exact_match"]


def test_a_task_evaluation_gets_an_explicit_running_mode(classification, beam_flags):
    """The TFMA run of a fine-tuning task gets `pipeline.core.beam`'s options too: without
    a running mode Beam's DirectRunner first reaches for the Prism runner (a download)."""
    from components import evaluate
    from pipeline.core.artifacts import Artifact
    from pipeline.core.config import PushConfig
    from pipeline.local_runner import Runtime
    from tests.conftest import PipelineStarted

    tmp_path, _, _, examples, model = classification
    artifact = tmp_path / "model_artifact"
    artifact.mkdir()
    (artifact / "saved_model").symlink_to(model)
    inputs = {"model": Artifact(type="Model", uri=str(artifact), fingerprint="m"),
              "examples": Artifact(type="Examples", uri=str(examples), fingerprint="e")}
    outputs = {name: str(tmp_path / "options" / name) for name in evaluate.SPEC.outputs}
    with pytest.raises(PipelineStarted):
        evaluate.run(inputs, outputs, Runtime(run_id="r", root=str(tmp_path)),
                     EvaluationConfig(), TaskConfig(type="classification"), PushConfig())
    assert beam_flags == [["--direct_running_mode=in_memory"]]
