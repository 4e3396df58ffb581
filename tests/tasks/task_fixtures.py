"""Hand-built task models and examples whose metrics a test can count in NumPy.

`write_table_classifier` exports a SavedModel with the classifier's `classify_examples`
signature over a fixed logits table (the class logits of an example are the row of its
first text token), and `write_echo_generator` one with text to text's
`generate_examples` that returns each example's `input_text` as its completion: both
contracts as the real exports serve them, with outputs a test knows exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.shared.example_wire import encode_example
from pipeline.core.contracts import examples

WINDOW = 8


def write_examples(directory: Path, records: list[dict], task: dict) -> Path:
    """An examples artifact (eval split only) of task records, as the transform writes it.

    Args:
        directory: where to write.
        records: per example {"token_ids" [WINDOW], "segment_ids", plus the task's int
            features} and {"domain", ...} string features.
        task: the feature spec's task entry (type, labels...).
    """
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    strings = ("domain", "length_bucket", "input_text", "target_text")
    with tf.io.TFRecordWriter(str(directory / "eval-00000-of-00001.tfrecord")) as writer:
        for record in records:
            ints = {k: v for k, v in record.items() if k not in strings}
            texts = {k: record.get(k, "") for k in strings
                     if k in examples.features(WINDOW, task["type"])}
            writer.write(encode_example(ints, texts))
    splits = {"eval": {"shards": ["eval-00000-of-00001.tfrecord"], "examples": len(records)},
              "train": {"shards": [], "examples": 0}}
    examples.write_feature_spec(str(directory), examples.feature_spec(WINDOW, 0, False, splits,
                                                                      [128], task))
    return directory


def classification_records(table: np.ndarray, count: int, seed: int) -> list[dict]:
    """Examples whose first text token picks a row of `table`; the label agrees with that
    row's argmax two times in three (so every metric is neither 0 nor 1)."""
    rng = np.random.default_rng(seed)
    vocab, classes = table.shape
    records = []
    for i in range(count):
        token = int(rng.integers(5, vocab))
        label = int(np.argmax(table[token])) if rng.random() < 2 / 3 else int(
            rng.integers(classes))
        ids = np.zeros(WINDOW, np.int64)
        ids[:4] = [2, token, 9, 3]
        segments = (np.arange(WINDOW) < 4).astype(np.int64)
        records.append({"token_ids": ids, "segment_ids": segments, "num_bytes": [4],
                        "label": [label], "domain": "ab"[i % 2], "length_bucket": "0-127"})
    return records


def write_table_classifier(directory: Path, table: np.ndarray) -> Path:
    """A SavedModel whose `classify_examples` returns softmax(table[first text token])."""
    import tensorflow as tf

    class TableClassifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(table.astype(np.float32), trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def classify_examples(self, examples):
            parsed = tf.io.parse_example(
                examples, {"token_ids": tf.io.FixedLenFeature([WINDOW], tf.int64)})
            logits = tf.gather(self.table, parsed["token_ids"][:, 1])
            return {"probabilities": tf.nn.softmax(logits, axis=-1)}

    module = TableClassifier()
    tf.saved_model.save(module, str(directory),
                        signatures={"classify_examples": module.classify_examples})
    return directory


def probabilities(table: np.ndarray, records: list[dict]) -> np.ndarray:
    """What the table classifier outputs, computed in NumPy."""
    logits = table[[int(r["token_ids"][1]) for r in records]].astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def reference_classification(table: np.ndarray, records: list[dict]) -> dict:
    """Accuracy, macro and per-class precision/recall/F1, exact one-vs-rest AUC and the
    confusion matrix, counted directly."""
    scores = probabilities(table, records)
    labels = np.array([r["label"][0] for r in records])
    predicted = scores.argmax(axis=1)
    classes = table.shape[1]
    confusion = np.zeros((classes, classes))
    np.add.at(confusion, (labels, predicted), 1)
    result = {"accuracy": float((labels == predicted).mean()), "confusion": confusion,
              "precision": [], "recall": [], "f1": [], "auc": [], "support": []}
    for c in range(classes):
        true_positive = float(((predicted == c) & (labels == c)).sum())
        precision = true_positive / max((predicted == c).sum(), 1)
        recall = true_positive / max((labels == c).sum(), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        positives, negatives = scores[labels == c, c], scores[labels != c, c]
        wins = (positives[:, None] > negatives[None, :]).mean()
        ties = (positives[:, None] == negatives[None, :]).mean()
        result["precision"].append(precision)
        result["recall"].append(recall)
        result["f1"].append(f1)
        result["auc"].append(float(wins + 0.5 * ties))
        result["support"].append(float((labels == c).sum()))
    present = [c for c in range(classes) if (labels == c).any() or (predicted == c).any()]
    for name in ("precision", "recall", "f1"):
        result[f"macro_{name}"] = float(np.mean([result[name][c] for c in present]))
    result["macro_auc"] = float(np.mean(result["auc"]))
    return result


def write_echo_generator(directory: Path) -> Path:
    """A SavedModel whose `generate_examples` answers each example with its `input_text`."""
    import tensorflow as tf

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def generate_examples(self, examples):
            parsed = tf.io.parse_example(
                examples, {"input_text": tf.io.FixedLenFeature([], tf.string)})
            return {"prediction": parsed["input_text"]}

    module = Echo()
    tf.saved_model.save(module, str(directory),
                        signatures={"generate_examples": module.generate_examples})
    return directory
