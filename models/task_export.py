"""The servable artifacts of the fine-tuning tasks: tokenizer + model in one SavedModel.

Like `export.py` (whose public decoding pieces `TextToTextExport` reuses), a fresh process loads them with only
`tensorflow` and `tensorflow_text` imported and calls them with raw strings. Inputs are
framed exactly as the transform framed the training examples
(`components/transform/task_examples.py`), from the examples' `task` entry.

Classification (`ClassifierExport`):
- `classify(text)`: per text the predicted `label` (string), its `label_id`, the
  `probabilities` of every class [B, C] and the class names `classes` [B, C]. A text is
  `[bos] + ids[:L-2] + [eos]`.
- `classify_examples(examples)`: `probabilities` of serialized task examples (TFMA).

Text to text (`TextToTextExport`, a causal LM export):
- `generate(prompt, max_new_tokens, temperature, top_k, top_p, seed)`: the prompt is the
  input: `[bos] + ids[:B] + separator`, then decoding as in `export.py`; `completion` is
  the target the model writes (up to eos).
- `generate_examples(examples)`: the greedy `prediction` of serialized task examples
  from their own prompt tokens, at most `max_target_tokens` + eos (TFMA).
- `score`, `score_examples`: the LM's (causal NLL of whole texts / windows).
"""

from __future__ import annotations

import tensorflow as tf

from models.export import GENERATE_SIGNATURE, LanguageModelExport
from models.tokenizer import TextTokenizer


class ClassifierExport(tf.Module):
    """A `tf.Module` whose signatures classify raw strings.

    Args:
        model: the trained `SequenceClassifier`.
        tokenizer: the tokenizer it was trained with.
        window: L, the examples' sequence length.
        labels: the label vocabulary (id order).
    """

    def __init__(self, model, tokenizer: TextTokenizer, window: int, labels: list[str]):
        super().__init__(name="classifier")
        self.model = model
        self.tokenizer = tokenizer
        self.window = int(window)
        info = tokenizer.info
        self.pad_id, self.bos_id, self.eos_id = int(info.pad_id), int(info.bos_id), int(info.eos_id)
        self.labels = tf.constant(list(labels), tf.string)

    def _probabilities(self, tokens, segments):
        logits = self.model({"token_ids": tokens, "segment_ids": segments}, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def classify(self, text):
        ids = self.tokenizer.tokenize(text)[:, :self.window - 2]
        rows = ids.nrows()
        sequences = tf.concat([tf.fill([rows, 1], self.bos_id), ids,
                               tf.fill([rows, 1], self.eos_id)], axis=1)
        tokens = sequences.to_tensor(default_value=self.pad_id, shape=[None, self.window])
        segments = tf.ones_like(sequences).to_tensor(default_value=0, shape=[None, self.window])
        probabilities = self._probabilities(tokens, segments)
        best = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"label": tf.gather(self.labels, best), "label_id": best,
                "probabilities": probabilities,
                "classes": tf.tile(self.labels[None, :], [tf.shape(best)[0], 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def classify_examples(self, examples):
        features = {name: tf.io.FixedLenFeature([self.window], tf.int64)
                    for name in ("token_ids", "segment_ids")}
        parsed = tf.io.parse_example(examples, features)
        return {"probabilities": self._probabilities(tf.cast(parsed["token_ids"], tf.int32),
                                                     tf.cast(parsed["segment_ids"], tf.int32))}


class TextToTextExport(LanguageModelExport):
    """The causal LM's export, whose `generate` answers an input with its target.

    Args:
        model: the trained `CausalLM`.
        tokenizer: the tokenizer it was trained with.
        window: L, the examples' sequence length.
        separator_ids: the separator's token ids (as the transform encoded it).
        input_budget: B, the input tokens a prompt keeps.
        max_target_tokens: T, the longest target (generate_examples writes T + eos).
    """

    def __init__(self, model, tokenizer: TextTokenizer, window: int, separator_ids: list[int],
                 input_budget: int, max_target_tokens: int):
        super().__init__(model, tokenizer, window)
        self.separator_ids = tf.constant(list(separator_ids), tf.int32)
        self.input_budget = int(input_budget)
        self.max_target_tokens = int(max_target_tokens)

    @tf.function(input_signature=GENERATE_SIGNATURE)
    def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        ids = self.tokenizer.tokenize(prompt)[:, :self.input_budget]
        rows = ids.nrows()
        separator = tf.tile(self.separator_ids[None, :], [rows, 1])
        prompts = tf.concat([tf.fill([rows, 1], self.bos_id), ids, separator], axis=1)
        lengths = tf.cast(prompts.row_lengths(), tf.int32)
        tokens = prompts.to_tensor(default_value=self.pad_id, shape=[None, self.window])
        new = tf.clip_by_value(max_new_tokens, 0, self.window - 1)
        ends = tf.minimum(lengths + new, self.window)
        tokens = self.decode_causal(tokens, lengths, ends, temperature, top_k, top_p, seed)
        return self.generate_outputs(tokens, lengths, ends)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def generate_examples(self, examples):
        features = {"token_ids": tf.io.FixedLenFeature([self.window], tf.int64),
                    "target_start": tf.io.FixedLenFeature([], tf.int64)}
        parsed = tf.io.parse_example(examples, features)
        lengths = tf.cast(parsed["target_start"], tf.int32)
        positions = tf.range(self.window)[None, :]
        # Only the prompt is kept: the target the example holds must not be seen.
        tokens = tf.where(positions < lengths[:, None], tf.cast(parsed["token_ids"], tf.int32),
                          self.pad_id)
        ends = tf.minimum(lengths + self.max_target_tokens + 1, self.window)
        tokens = self.decode_causal(tokens, lengths, ends, tf.constant(0.0), tf.constant(0),
                              tf.constant(1.0), tf.constant(0))
        return {"prediction": self.completion_text(tokens, lengths, ends)}


def save_task_export(model, tokenizer: TextTokenizer, window: int, task: dict,
                     directory: str) -> None:
    """Write a fine-tuning task's SavedModel with its signatures.

    Args:
        model: the trained Keras task model (`SequenceClassifier` or `CausalLM`).
        tokenizer: its tokenizer.
        window: the sequence length it was trained on.
        task: the examples' `task` entry (`feature_spec.json`).
        directory: the SavedModel directory to create.
    """
    if task["type"] == "classification":
        module = ClassifierExport(model, tokenizer, window, task["labels"])
        signatures = {"classify": module.classify, "classify_examples": module.classify_examples}
    else:
        module = TextToTextExport(model, tokenizer, window, task["separator_ids"],
                                  task["input_budget"], task["max_target_tokens"])
        signatures = {"generate": module.generate, "generate_examples": module.generate_examples,
                      "score": module.score, "score_examples": module.score_examples}
    tf.saved_model.save(module, directory, signatures=signatures)
