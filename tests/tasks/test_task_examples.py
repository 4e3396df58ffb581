"""Framing one document per example, and its proto encoding (parsed back by TensorFlow)."""

from __future__ import annotations

import numpy as np

from components.shared import example_wire
from components.transform import task_examples
from pipeline.core.contracts import examples

BOS, EOS, PAD = 2, 3, 0


def test_classification_frames_bos_text_eos_and_cuts_long_texts():
    short = task_examples.classification_sequence(np.array([10, 11, 12]), np.array([1, 2, 3]),
                                                  8, BOS, EOS, PAD)
    assert short["token_ids"].tolist() == [2, 10, 11, 12, 3, 0, 0, 0]
    assert short["segment_ids"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert (short["num_bytes"], short["truncated"], short["tokens"]) == (6, False, 5)
    long = task_examples.classification_sequence(np.arange(10, 20), np.ones(10), 8, BOS, EOS, PAD)
    assert long["token_ids"].tolist() == [2, 10, 11, 12, 13, 14, 15, 3]
    assert long["segment_ids"].tolist() == [1] * 8
    assert (long["num_bytes"], long["truncated"], long["tokens"]) == (6, True, 12)


def test_text_to_text_keeps_the_input_budget_and_marks_the_target_start():
    separator = np.array([7, 8])
    # L=16, T=4: the input keeps 16 - 2 - 2 - 4 = 8 tokens whatever the target's length.
    assert task_examples.input_budget(16, separator, 4) == 8
    framed = task_examples.text_to_text_sequence(np.arange(20, 30), np.array([40, 41]),
                                                 separator, 16, 4, BOS, EOS, PAD)
    assert framed["token_ids"].tolist() == [2, *range(20, 28), 7, 8, 40, 41, 3, 0, 0]
    assert framed["segment_ids"].tolist() == [1] * 14 + [0, 0]
    assert framed["target_start"] == 11
    assert (framed["input_kept"], framed["target_kept"]) == (8, 2)
    cut = task_examples.text_to_text_sequence(np.array([20]), np.arange(40, 50), separator, 16, 4,
                                              BOS, EOS, PAD)
    assert cut["token_ids"].tolist()[:10] == [2, 20, 7, 8, 40, 41, 42, 43, 3, 0]
    assert (cut["target_start"], cut["target_kept"]) == (4, 4)


def test_covered_text_is_the_prefix_the_kept_tokens_cover():
    assert task_examples.covered_text("héllo world", np.array([3, 3, 6]), 2) == "héllo"
    assert task_examples.covered_text("abc", np.array([1, 1, 1]), 5) == "abc"


def test_encoded_examples_parse_back_with_tensorflow():
    import tensorflow as tf

    framed = task_examples.text_to_text_sequence(np.arange(300, 305), np.array([40]),
                                                 np.array([7]), 12, 3, BOS, EOS, PAD)
    record = example_wire.encode_example(
        {"token_ids": framed["token_ids"], "segment_ids": framed["segment_ids"],
         "num_bytes": [1234567], "target_start": [framed["target_start"]]},
        {"domain": "ünï", "input_text": "in", "target_text": "", "length_bucket": "0-127"})
    spec = examples.features(12, "text_to_text")
    description = {name: tf.io.FixedLenFeature(f["shape"], tf.int64 if f["dtype"] == "int64"
                                               else tf.string) for name, f in spec.items()}
    parsed = tf.io.parse_single_example(record, description)
    assert parsed["token_ids"].numpy().tolist() == framed["token_ids"].tolist()
    assert parsed["segment_ids"].numpy().tolist() == framed["segment_ids"].tolist()
    assert parsed["num_bytes"].numpy().tolist() == [1234567]
    assert parsed["target_start"].numpy().tolist() == [framed["target_start"]]
    assert parsed["domain"].numpy()[0].decode() == "ünï"
    assert parsed["target_text"].numpy()[0] == b""
    # The same features as protobuf's own encoder writes them.
    example = tf.train.Example.FromString(record)
    assert example.features.feature["token_ids"].int64_list.value[:6] == [2, 300, 301, 302, 303,
                                                                         304]
    label = example_wire.encode_example({"label": [5], "token_ids": [1], "segment_ids": [1],
                                         "num_bytes": [0]}, {"domain": "", "length_bucket": ""})
    assert tf.train.Example.FromString(label).features.feature["label"].int64_list.value == [5]
