"""The servable artifact: tokenizer + Keras model in one SavedModel.

TensorFlow-specific, like the tokenizer and the other SavedModel exports (`tokenizer.py`,
`task_export.py`); the rest of `models/` is backend-agnostic Keras. A fresh
process loads the SavedModel with only `tensorflow` and `tensorflow_text` imported and
calls its signatures with raw strings. What the numbers mean depends on the model's
objective (`model.objective`, from `model.family`):

- `score(text)`: per text, summed NLL (nats) and the count of predicted tokens of
  `[bos] + ids + [eos]`, and the UTF-8 byte count of the normalized text.
  Causal LMs (gpt, llama): every token after `bos` is predicted from the tokens before
  it. Texts longer than the model's window are scored in chunks of `window` tokens that
  overlap by one token: every token is predicted exactly once, from at most
  `window - 1` tokens of context (the context restarts at each chunk boundary).
  Masked LMs (bert): a masked-token NLL, not a causal perplexity: the training recipe
  (`models/mlm.py`: 15% of the real tokens chosen, 80% of those masked, 10% replaced,
  10% kept) is applied with the fixed seed `SCORE_SEED`, and the NLL of the original
  tokens at the chosen positions is reported (`num_tokens` counts those). The draw is a
  function of the chunk's tokens, so a text scores the same in any batch. Long texts
  are cut into chunks of `window` tokens that do not overlap.
- `score_examples(examples)`: the same sums (plus `num_correct`, argmax == target) for
  serialized packed `tf.train.Example`s, with targets as in training (`models.objectives`).
- `generate(prompt, max_new_tokens, temperature, top_k, top_p, seed)`: the new text only
  (`completion`), with `new_tokens`, how many tokens it holds, and `ended`, whether the
  row stopped at `eos` (a caller that continues a completion, such as `lmpipe generate`
  streaming it, counts and stops by them). Temperature 0 is greedy; `top_k` 0 and `top_p` outside (0, 1) switch those filters
  off; sampling is stateless in `seed`, so a seed reproduces a completion. Generation of
  a row stops at `eos`.
  Causal LMs decode with the model's key/value cache. Prompt plus completion fit the
  window: the completion is at most `window - 1` tokens and the prompt keeps its last
  `window - max_new_tokens` tokens.
  Masked LMs fill masks, left to right: the prompt is followed by `max_new_tokens` mask
  tokens and `eos`, and each step runs the whole (bidirectional) window and fills the
  leftmost remaining mask. A BERT-style model was not trained to write text this way,
  so expect weak completions; the signature is there so that every family serves the
  same contract. The completion is at most `window - 2` tokens and the prompt keeps
  its last `window - max_new_tokens - 1` tokens.
"""

from __future__ import annotations

import tensorflow as tf

from models.masking import token_nll
from models.objectives import make_objective
from models.tokenizer import TextTokenizer

_NEG = -1e9

# The masked-LM corruption that `score` and `score_examples` of a masked LM measure.
SCORE_SEED = (0, 0)
# The `generate` signature of every export that generates (`lmpipe generate` calls it).
GENERATE_SIGNATURE = [
    tf.TensorSpec([None], tf.string, name="prompt"),
    tf.TensorSpec([], tf.int32, name="max_new_tokens"),
    tf.TensorSpec([], tf.float32, name="temperature"),
    tf.TensorSpec([], tf.int32, name="top_k"),
    tf.TensorSpec([], tf.float32, name="top_p"),
    tf.TensorSpec([], tf.int32, name="seed"),
]


class LanguageModelExport(tf.Module):
    """A `tf.Module` whose signatures serve a language model on raw strings.

    Args:
        model: a Keras LM task ({token_ids, segment_ids} -> logits) with an `objective`
            attribute: a `CausalLM` (with `call_with_cache` and `empty_cache`) or a
            `MaskedLM`.
        tokenizer: the tokenizer it was trained with.
        window: the sequence length it was trained on (the longest input it sees here).
    """

    def __init__(self, model, tokenizer: TextTokenizer, window: int):
        super().__init__(name="language_model")
        self.model = model
        self.tokenizer = tokenizer
        self.window = int(window)
        info = tokenizer.info
        self.pad_id = int(info.pad_id)
        self.bos_id = int(info.bos_id)
        self.eos_id = int(info.eos_id)
        self.objective = make_objective(model.objective, info.vocab_size, info.special_tokens)
        self.causal = self.objective.causal
        # Causal chunks overlap by one token so that every token is predicted once; masked
        # chunks do not, so that every token is a candidate once.
        self.overlap = 1 if self.causal else 0
        banned = [info.pad_id, info.bos_id] + [info.special_tokens[name] for name in ("mask",)
                                               if name in info.special_tokens]
        # Ids the sampler never emits: padding, a second document start, the MLM mask.
        self.banned_ids = tf.constant(sorted(set(banned)), tf.int32)

    # --- score ---

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def score(self, text):
        ids = self.tokenizer.tokenize(text)
        rows = ids.nrows()
        sequences = tf.concat([tf.fill([rows, 1], self.bos_id), ids,
                               tf.fill([rows, 1], self.eos_id)], axis=1)
        tokens, segments, chunk_row = self._chunks(sequences)
        nll, count, _ = self._sums(tokens, segments)
        num_bytes = tf.strings.length(self.tokenizer.normalize(text), unit="BYTE")
        return {"nll": tf.math.unsorted_segment_sum(nll, chunk_row, rows),
                "num_tokens": tf.math.unsorted_segment_sum(count, chunk_row, rows),
                "num_bytes": tf.cast(num_bytes, tf.int64)}

    def _chunks(self, sequences: tf.RaggedTensor):
        """Ragged [B, n] -> windows [C, W] overlapping by `overlap` tokens, segment ids
        (1 on real tokens, 0 on padding) and the row each window belongs to."""
        stride = self.window - self.overlap
        lengths = tf.cast(sequences.row_lengths(), tf.int32)
        num_chunks = (tf.maximum(lengths, self.overlap + 1) - self.overlap - 1) // stride + 1
        chunk_row = tf.repeat(tf.range(tf.size(lengths)), num_chunks)
        starts = tf.ragged.range(num_chunks).flat_values * stride
        positions = starts[:, None] + tf.range(self.window)[None, :]
        valid = positions < tf.gather(lengths, chunk_row)[:, None]
        offsets = tf.gather(tf.cast(sequences.row_starts(), tf.int32), chunk_row)[:, None]
        flat = tf.gather(sequences.flat_values, tf.where(valid, offsets + positions, 0))
        tokens = tf.where(valid, flat, self.pad_id)
        return tokens, tf.cast(valid, tf.int32), chunk_row

    def _sums(self, tokens, segments):
        """Per-row NLL sum, target count and correct-argmax count of packed windows."""
        inputs, targets, weights = self.objective.prepare(
            {"token_ids": tokens, "segment_ids": segments}, tf.constant(SCORE_SEED, tf.int32))
        logits = self.model(inputs, training=False)
        nll = tf.reduce_sum(token_nll(logits, targets) * weights, axis=1)
        valid = weights > 0
        correct = tf.logical_and(valid, tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                                 targets))
        return (nll, tf.reduce_sum(tf.cast(valid, tf.int64), axis=1),
                tf.reduce_sum(tf.cast(correct, tf.int64), axis=1))

    # --- score_examples ---

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def score_examples(self, examples):
        features = {
            "token_ids": tf.io.FixedLenFeature([self.window], tf.int64),
            "segment_ids": tf.io.FixedLenFeature([self.window], tf.int64),
            "num_bytes": tf.io.FixedLenFeature([1], tf.int64),
        }
        parsed = tf.io.parse_example(examples, features)
        nll, count, correct = self._sums(tf.cast(parsed["token_ids"], tf.int32),
                                         tf.cast(parsed["segment_ids"], tf.int32))
        return {"nll": nll, "num_tokens": count, "num_correct": correct,
                "num_bytes": parsed["num_bytes"][:, 0]}

    # --- generate ---

    @tf.function(input_signature=GENERATE_SIGNATURE)
    def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        # A masked LM keeps one position for the closing eos.
        closing = 0 if self.causal else 1
        new = tf.clip_by_value(max_new_tokens, 0, self.window - 1 - closing)
        ids = self.tokenizer.tokenize(prompt)
        prompts = tf.concat([tf.fill([ids.nrows(), 1], self.bos_id), ids], axis=1)
        prompts = _keep_last(prompts, self.window - new - closing)
        lengths = tf.cast(prompts.row_lengths(), tf.int32)
        tokens = prompts.to_tensor(default_value=self.pad_id,
                                   shape=[None, self.window])
        ends = tf.minimum(lengths + new, self.window)
        decode = self.decode_causal if self.causal else self._fill_masks
        tokens = decode(tokens, lengths, ends, temperature, top_k, top_p, seed)
        return self.generate_outputs(tokens, lengths, ends)

    def decode_causal(self, tokens, lengths, ends, temperature, top_k, top_p, seed):
        """Causal LMs: fill positions lengths[r] .. ends[r]-1 of each row with the key/value
        cache, stopping a row at eos.

        Rows of different prompt lengths decode together: at position i a row still in
        its prompt keeps its prompt token (keras-hub's scheme), so the cache holds the
        right keys and values for every row. Subclasses that frame prompts their own way
        (`task_export.TextToTextExport`) decode with this too.

        Args:
            tokens: int32 [B, window]: each row's prompt in its first lengths[r] positions.
            lengths: int32 [B], prompt lengths.
            ends: int32 [B], one past the last position a row may write.
            temperature, top_k, top_p, seed: as for `generate` (scalars).

        Returns:
            int32 [B, window]: the prompts followed by the decoded tokens.
        """
        batch = tf.shape(tokens)[0]
        cache = self.model.empty_cache(batch, self.window)
        # Fill the cache for the whole window; positions not yet decoded are rewritten
        # when their turn comes, and the causal mask hides them until then.
        _, cache = self.model.call_with_cache(tokens, cache, 0)
        done = tf.zeros([batch], tf.bool)
        start = tf.reduce_min(lengths)
        stop = tf.reduce_max(ends)

        def body(i, tokens, cache, done):
            previous = tokens[:, i - 1:i]
            logits, cache = self.model.call_with_cache(previous, cache, i - 1)
            step_seed = tf.stack([seed, i])
            chosen = self._sample(logits[:, 0, :], temperature, top_k, top_p, step_seed)
            writing = tf.logical_and(i >= lengths, tf.logical_and(i < ends, tf.logical_not(done)))
            column = tf.where(writing, chosen, tf.where(i < lengths, tokens[:, i], self.pad_id))
            tokens = tf.where(tf.range(self.window)[None, :] == i, column[:, None], tokens)
            done = tf.logical_or(done, tf.logical_and(writing, tf.equal(chosen, self.eos_id)))
            return i + 1, tokens, cache, done

        def cond(i, tokens, cache, done):
            active = tf.logical_and(tf.logical_not(done), i < ends)
            return tf.logical_and(i < stop, tf.reduce_any(active))

        _, tokens, _, _ = tf.while_loop(cond, body, (start, tokens, cache, done))
        return tokens

    def _fill_masks(self, tokens, lengths, ends, temperature, top_k, top_p, seed):
        """Masked LMs: put masks at lengths[r] .. ends[r]-1 and eos at ends[r], then fill
        the masks left to right, one full bidirectional pass per position."""
        positions = tf.range(self.window)[None, :]
        after = tf.where(positions < ends[:, None], self.objective.mask_id,
                         tf.where(positions == ends[:, None], self.eos_id, self.pad_id))
        tokens = tf.where(positions < lengths[:, None], tokens, after)
        segments = tf.cast(positions <= ends[:, None], tf.int32)
        done = tf.zeros([tf.shape(tokens)[0]], tf.bool)

        def body(i, tokens, done):
            logits = self.model({"token_ids": tokens, "segment_ids": segments}, training=False)
            chosen = self._sample(logits[:, i, :], temperature, top_k, top_p, tf.stack([seed, i]))
            writing = tf.logical_and(i >= lengths, tf.logical_and(i < ends, tf.logical_not(done)))
            column = tf.where(writing, chosen, tokens[:, i])
            tokens = tf.where(positions == i, column[:, None], tokens)
            done = tf.logical_or(done, tf.logical_and(writing, tf.equal(chosen, self.eos_id)))
            return i + 1, tokens, done

        def cond(i, tokens, done):
            active = tf.logical_and(tf.logical_not(done), i < ends)
            return tf.logical_and(i < tf.reduce_max(ends), tf.reduce_any(active))

        _, tokens, _ = tf.while_loop(cond, body, (tf.reduce_min(lengths), tokens, done))
        return tokens

    def _sample(self, logits, temperature, top_k, top_p, seed):
        """Next ids [B] from logits [B, V]: argmax at temperature 0, else a filtered draw."""
        vocab = tf.shape(logits)[-1]
        banned = tf.reduce_any(tf.equal(tf.range(vocab)[:, None], self.banned_ids[None, :]), 1)
        logits = tf.cast(logits, tf.float32)
        greedy = tf.argmax(tf.where(banned[None, :], _NEG, logits), axis=-1,
                           output_type=tf.int32)
        # Banned after scaling: a huge temperature would otherwise bring them back level.
        scaled = tf.where(banned[None, :], _NEG, logits / tf.maximum(temperature, 1e-6))
        scaled = tf.cond(top_k > 0, lambda: _top_k_filter(scaled, tf.minimum(top_k, vocab)),
                         lambda: scaled)
        scaled = tf.cond(tf.logical_and(top_p > 0.0, top_p < 1.0),
                         lambda: _top_p_filter(scaled, top_p), lambda: scaled)
        drawn = tf.random.stateless_categorical(scaled, 1, seed=seed, dtype=tf.int32)[:, 0]
        return tf.where(temperature > 0.0, drawn, greedy)

    def generate_outputs(self, tokens, lengths, ends) -> dict:
        """`generate`'s outputs: {"completion" string [B], "new_tokens" int32 [B] (before
        any eos), "ended" bool [B]} (arguments as for `completion_text`)."""
        positions = tf.range(self.window)[None, :]
        generated = tf.logical_and(positions >= lengths[:, None], positions < ends[:, None])
        is_eos = tf.logical_and(generated, tf.equal(tokens, self.eos_id))
        before_eos = tf.equal(tf.cumsum(tf.cast(is_eos, tf.int32), axis=1), 0)
        kept = tf.logical_and(generated, before_eos)
        return {"completion": self.completion_text(tokens, lengths, ends),
                "new_tokens": tf.reduce_sum(tf.cast(kept, tf.int32), axis=1),
                "ended": tf.reduce_any(is_eos, axis=1)}

    def completion_text(self, tokens, lengths, ends):
        """The text the new tokens add to the prompt (up to, not including, eos).

        Args:
            tokens: int32 [B, window], prompts and decoded tokens.
            lengths: int32 [B], prompt lengths.
            ends: int32 [B], one past the last decoded position.

        Returns:
            string [B]: each row's completion.
        """
        positions = tf.range(self.window)[None, :]
        generated = tf.logical_and(positions >= lengths[:, None], positions < ends[:, None])
        is_eos = tf.logical_and(generated, tf.equal(tokens, self.eos_id))
        before_eos = tf.equal(tf.cumsum(tf.cast(is_eos, tf.int32), axis=1), 0)
        keep = tf.logical_or(positions < lengths[:, None], tf.logical_and(generated, before_eos))
        full = self.tokenizer.detokenize(tf.ragged.boolean_mask(tokens, keep))
        prefix = self.tokenizer.detokenize(tf.RaggedTensor.from_tensor(tokens, lengths=lengths))
        # Decoding prompt + completion together keeps the space at their junction, which
        # decoding the completion alone would drop.
        start = tf.strings.length(prefix)
        return tf.strings.substr(full, start, tf.strings.length(full) - start)


def _keep_last(sequences: tf.RaggedTensor, count) -> tf.RaggedTensor:
    """The last `count` items of each row."""
    lengths = tf.cast(sequences.row_lengths(), tf.int32)
    starts = tf.maximum(lengths - count, 0)
    offsets = tf.cast(sequences.row_starts(), tf.int32)
    indices = tf.ragged.range(offsets + starts, offsets + lengths)
    return tf.gather(sequences.flat_values, indices)


def _top_k_filter(logits, k):
    kth = tf.math.top_k(logits, k=k).values[:, -1:]
    return tf.where(logits < kth, _NEG, logits)


def _top_p_filter(logits, top_p):
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
    # The smallest logit still inside the nucleus (the first token always is).
    cutoff = tf.reduce_min(tf.where(before < top_p, ordered, ordered[:, :1]), axis=-1,
                           keepdims=True)
    return tf.where(logits < cutoff, _NEG, logits)


def save_export(model, tokenizer: TextTokenizer, window: int, directory: str) -> None:
    """Write the SavedModel with its `score`, `score_examples` and `generate` signatures.

    Args:
        model: the trained Keras LM task (`CausalLM` or `MaskedLM`).
        tokenizer: its tokenizer.
        window: the sequence length it was trained on.
        directory: the SavedModel directory to create.
    """
    module = LanguageModelExport(model, tokenizer, window)
    tf.saved_model.save(module, directory, signatures={
        "score": module.score,
        "score_examples": module.score_examples,
        "generate": module.generate,
    })
