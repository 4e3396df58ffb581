"""The servable artifact: tokenizer + Keras model in one SavedModel, for every `task.type`.

TensorFlow-specific, like the tokenizer (`tokenizer.py`); the rest of `models/` is
backend-agnostic Keras. A fresh process loads the SavedModel with only `tensorflow` and
`tensorflow_text` imported and calls its signatures with raw strings.

`ServingModule` holds what every export shares: the tokenizer inside the SavedModel, the
framing of token ids (`[bos] + ids`, then closing ids) and the parsing of serialized
examples. What differs per `task.type` is one subclass, with its signatures, chosen by
`export_for` (as `models.objectives.objective_for` chooses the training objective).
Inputs are framed exactly as the transform framed the training examples
(`components/transform/task_examples.py`), from the examples' `task` entry.

task.type lm (`LanguageModelExport`); what the numbers mean depends on the model's
objective (`model.objective`, from `model.family`):

- `score(text)`: per text, summed NLL (nats) and the count of predicted tokens of
  `[bos] + ids + [eos]`, and the UTF-8 byte count of the normalized text.
  Causal LMs (gpt, llama): every token after `bos` is predicted from the tokens before
  it. Texts longer than the model's window are scored in chunks of `window` tokens that
  overlap by one token: every token is predicted exactly once, from at most
  `window - 1` tokens of context (the context restarts at each chunk boundary).
  Masked LMs (bert): a masked-token NLL, not a causal perplexity: the training recipe
  (`models/corruption.py`: 15% of the real tokens chosen, 80% of those masked, 10%
  replaced, 10% kept) is applied with the fixed seed `SCORE_SEED`, and the NLL of the
  original tokens at the chosen positions is reported (`num_tokens` counts those). The
  draw is a function of the chunk's tokens, so a text scores the same in any batch. Long
  texts are cut into chunks of `window` tokens that do not overlap.
- `score_examples(examples)`: the same sums (plus `num_correct`, argmax == target) for
  serialized packed `tf.train.Example`s, with targets as in training (`models.objectives`).
- `generate(prompt, max_new_tokens, temperature, top_k, top_p, seed)`: the new text only
  (`completion`), with `new_tokens`, how many tokens it holds, and `ended`, whether the
  row stopped at `eos` (a caller that continues a completion, such as `lmpipe generate`
  streaming it, counts and stops by them). Temperature 0 is greedy; `top_k` 0 and `top_p`
  outside (0, 1) switch those filters off; sampling is stateless in `seed`, so a seed
  reproduces a completion. Generation of a row stops at `eos`.
  Causal LMs decode with the model's key/value cache, the whole loop compiled by XLA on
  first use, once per batch size (rounded up to a power of two, so that a server batching
  requests compiles a few sizes, not every one) and cache length (as long as prompt and
  completion need: 64, 128, ... positions, up to the window). Prompt plus completion fit
  the window: the completion is at most `window - 1` tokens and the prompt keeps its last
  `window - max_new_tokens` tokens.
  Masked LMs fill masks, left to right: the prompt is followed by `max_new_tokens` mask
  tokens and `eos`, and each step runs the whole (bidirectional) window and fills the
  leftmost remaining mask. A BERT-style model was not trained to write text this way,
  so expect weak completions; the signature is there so that every family serves the
  same contract. The completion is at most `window - 2` tokens and the prompt keeps
  its last `window - max_new_tokens - 1` tokens.

task.type classification (`ClassifierExport`):

- `classify(text)`: per text the predicted `label` (string), its `label_id`, the
  `probabilities` of every class [B, C] and the class names `classes` [B, C]. A text is
  `[bos] + ids[:L-2] + [eos]`.
- `classify_examples(examples)`: `probabilities` of serialized task examples (TFMA).

task.type text_to_text (`TextToTextExport`, the causal LM's signatures):

- `generate(...)`: as above, but the prompt is the input: `[bos] + ids[:B] + separator`;
  `completion` is the target the model writes (up to eos).
- `generate_examples(examples)`: the greedy `prediction` of serialized task examples
  from their own prompt tokens, at most `max_target_tokens` + eos (TFMA).
- `score`, `score_examples`: the LM's (causal NLL of whole texts / windows).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.objectives import make_objective, token_nll
from models.tokenizer import TextTokenizer

_NEG = -1e9
# Prompt positions the decoder's cache is filled with per pass (`_prefilled`).
_PREFILL = 32

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


class ServingModule(tf.Module):
    """What the export of every `task.type` shares: model, tokenizer, framing, parsing.

    Subclasses add the signatures their task type serves and name them in `SIGNATURES`.

    Args:
        model: the trained Keras model ({token_ids, segment_ids} -> logits).
        tokenizer: the tokenizer it was trained with.
        window: L, the sequence length it was trained on (the longest input it sees).
        name: the module's name.
    """

    SIGNATURES: tuple[str, ...] = ()

    def __init__(self, model, tokenizer: TextTokenizer, window: int, name: str):
        super().__init__(name=name)
        self.model = model
        self.tokenizer = tokenizer
        self.window = int(window)
        info = tokenizer.info
        self.pad_id = int(info.pad_id)
        self.bos_id = int(info.bos_id)
        self.eos_id = int(info.eos_id)

    def signature_functions(self) -> dict:
        """{signature name: its `tf.function`}, what `tf.saved_model.save` serves."""
        return {name: getattr(self, name) for name in self.SIGNATURES}

    def _framed(self, ids: tf.RaggedTensor, closing_ids=None) -> tf.RaggedTensor:
        """Each row as `[bos] + ids`, followed by `closing_ids` (int32 [C]) if given."""
        rows = ids.nrows()
        parts = [tf.fill([rows, 1], self.bos_id), ids]
        if closing_ids is not None:
            parts.append(tf.tile(closing_ids[None, :], [rows, 1]))
        return tf.concat(parts, axis=1)

    def _padded(self, sequences: tf.RaggedTensor) -> tf.Tensor:
        """Ragged ids [B, <= window] -> int32 [B, window], `pad_id` after each row."""
        return sequences.to_tensor(default_value=self.pad_id, shape=[None, self.window])

    def _parse(self, examples, windows: tuple[str, ...], **features) -> dict:
        """Serialized examples -> their int32 `windows` features [B, window] and the other
        `features` (name -> `tf.io.FixedLenFeature`) as parsed."""
        spec = {name: tf.io.FixedLenFeature([self.window], tf.int64) for name in windows}
        parsed = tf.io.parse_example(examples, {**spec, **features})
        return {name: tf.cast(value, tf.int32) if name in windows else value
                for name, value in parsed.items()}


class LanguageModelExport(ServingModule):
    """task.type lm: `score`, `score_examples` and `generate` on raw strings.

    Args:
        model: a Keras LM ({token_ids, segment_ids} -> logits) with an `objective`
            attribute: a `CausalLM` (with `call_with_cache` and `empty_cache`) or a
            `MaskedLM`.
        tokenizer: the tokenizer it was trained with.
        window: the sequence length it was trained on (the longest input it sees here).
    """

    SIGNATURES = ("score", "score_examples", "generate")

    def __init__(self, model, tokenizer: TextTokenizer, window: int):
        super().__init__(model, tokenizer, window, name="language_model")
        info = tokenizer.info
        self.objective = make_objective(model.objective, info.vocab_size, info.special_tokens)
        self.causal = self.objective.causal
        # Causal chunks overlap by one token so that every token is predicted once; masked
        # chunks do not, so that every token is a candidate once.
        self.overlap = 1 if self.causal else 0
        # A masked LM keeps one position of the window for the closing eos of `generate`.
        self.closing = 0 if self.causal else 1
        banned = [info.pad_id, info.bos_id] + [info.special_tokens[name] for name in ("mask",)
                                               if name in info.special_tokens]
        # Ids the sampler never emits: padding, a second document start, the MLM mask;
        # never eos, which GPT-2's tokenizer also uses as bos and pad (one token for all).
        # Nor an embedding row beyond the tokenizer's ids (a padded checkpoint's): it has
        # no text.
        banned += range(info.token_count or info.vocab_size, info.vocab_size)
        # A constant [V] mask, not ids compared with every id at each decoding step.
        self.banned = tf.constant(np.isin(np.arange(info.vocab_size),
                                          sorted(set(banned) - {info.eos_id})))

    # --- score ---

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def score(self, text):
        ids = self.tokenizer.tokenize(text)
        rows = ids.nrows()
        sequences = self._framed(ids, tf.constant([self.eos_id], tf.int32))
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
        parsed = self._parse(examples, ("token_ids", "segment_ids"),
                             num_bytes=tf.io.FixedLenFeature([1], tf.int64))
        nll, count, correct = self._sums(parsed["token_ids"], parsed["segment_ids"])
        return {"nll": nll, "num_tokens": count, "num_correct": correct,
                "num_bytes": parsed["num_bytes"][:, 0]}

    # --- generate ---

    @tf.function(input_signature=GENERATE_SIGNATURE)
    def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        new = tf.clip_by_value(max_new_tokens, 0, self.window - 1 - self.closing)
        prompts = self._prompts(prompt, new)
        lengths = tf.cast(prompts.row_lengths(), tf.int32)
        tokens = self._padded(prompts)
        ends = tf.minimum(lengths + new, self.window)
        decode = self._decode_causal if self.causal else self._fill_masks
        tokens = decode(tokens, lengths, ends, temperature, top_k, top_p, seed)
        return self._generate_outputs(tokens, lengths, ends)

    def _prompts(self, prompt, new):
        """Prompt strings [B] -> `[bos] + ids`, keeping the last tokens that leave room
        for `new` tokens (and a masked LM's closing eos)."""
        prompts = self._framed(self.tokenizer.tokenize(prompt))
        return _keep_last(prompts, self.window - new - self.closing)

    def _decode_causal(self, tokens, lengths, ends, temperature, top_k, top_p, seed):
        """Causal LMs: fill positions lengths[r] .. ends[r]-1 of each row with the key/value
        cache, stopping a row at eos.

        The cache holds the shortest of `_cache_lengths` that reaches the last position
        written (`tf.switch_case`: one compiled decoder per length, each compiled on its
        first use): a step's attention reads the whole cache, so a 128-token completion
        in a 1024-token window should not pay for 1024 positions.

        Args:
            tokens: int32 [B, window]: each row's prompt in its first lengths[r] positions.
            lengths: int32 [B], prompt lengths.
            ends: int32 [B], one past the last position a row may write.
            temperature, top_k, top_p, seed: as for `generate` (scalars).

        Returns:
            int32 [B, window]: the prompts followed by the decoded tokens.
        """
        cache_lengths = self._cache_lengths()
        shorter = tf.constant(cache_lengths[:-1], tf.int32) < tf.reduce_max(ends)
        bucket = tf.reduce_sum(tf.cast(shorter, tf.int32))

        # Rows up to a power of two, the last row repeated (the same prompt and end, so the
        # loop's first and last positions stay those of the real rows).
        rows = tf.shape(tokens)[0]
        powers = tf.bitwise.left_shift(1, tf.range(31))
        padded = tf.where(rows > 0, tf.reduce_min(tf.where(powers >= rows, powers, powers[-1])),
                          0)
        take = tf.minimum(tf.range(padded), rows - 1)
        tokens, lengths, ends = (tf.gather(value, take) for value in (tokens, lengths, ends))

        def branch(length):
            # Plain TensorFlow calls, kept away from autograph here and in the compiled loop:
            # autograph's conversion of that bound method once returned another function's
            # (`__init__() missing 2 required positional arguments`) while saving.
            @tf.autograph.experimental.do_not_convert
            def decode():
                decoded = self._decode_in_cache(tokens[:, :length], lengths, ends, temperature,
                                                top_k, top_p, seed)
                return tf.concat([decoded, tokens[:, length:]], axis=1)
            return decode

        return tf.switch_case(bucket, [branch(length) for length in cache_lengths])[:rows]

    def _cache_lengths(self) -> list[int]:
        """The cache lengths a decoder is compiled for: 64, 128, ... below the window, and
        the window."""
        lengths = [64]
        while lengths[-1] < self.window:
            lengths.append(lengths[-1] * 2)
        return [length for length in lengths if length < self.window] + [self.window]

    # The whole decode loop is one XLA computation: per new token the model runs on one
    # position, and outside XLA its hundreds of small ops each cost more to dispatch than
    # to compute (bench/NOTES.md, generation).
    @tf.function(jit_compile=True, autograph=False)
    def _decode_in_cache(self, tokens, lengths, ends, temperature, top_k, top_p, seed):
        """`_decode_causal` with a cache of tokens' length S (every end <= S): int32
        [B, S], the prompts followed by the decoded tokens.

        Rows of different prompt lengths decode together: at position i a row still in
        its prompt keeps its prompt token (keras-hub's scheme), so the cache holds the
        right keys and values for every row.
        """
        batch, length = tf.shape(tokens)[0], tokens.shape[1]
        start = tf.reduce_min(lengths)
        stop = tf.reduce_max(ends)
        cache = self._prefilled(tokens, start - 1)
        done = tf.zeros([batch], tf.bool)

        def body(i, tokens, cache, done):
            # Gathers, not slices with a loop-dependent start: XLA compiles these.
            previous = tf.gather(tokens, [i - 1], axis=1)
            logits, cache = self.model.call_with_cache(previous, cache, i - 1)
            step_seed = tf.stack([seed, i])
            chosen = self._sample(logits[:, 0, :], temperature, top_k, top_p, step_seed)
            writing = tf.logical_and(i >= lengths, tf.logical_and(i < ends, tf.logical_not(done)))
            column = tf.where(writing, chosen,
                              tf.where(i < lengths, tf.gather(tokens, i, axis=1), self.pad_id))
            tokens = tf.where(tf.range(length)[None, :] == i, column[:, None], tokens)
            done = tf.logical_or(done, tf.logical_and(writing, tf.equal(chosen, self.eos_id)))
            return i + 1, tokens, cache, done

        def cond(i, tokens, cache, done):
            active = tf.logical_and(tf.logical_not(done), i < ends)
            return tf.logical_and(i < stop, tf.reduce_any(active))

        _, tokens, _, _ = tf.while_loop(cond, body, (start, tokens, cache, done))
        return tokens

    def _prefilled(self, tokens, filled):
        """The cache [B, S] with the keys and values of positions 0 .. filled - 1 (every
        row's prompt there; the decoding loop writes the rest), `_PREFILL` positions a
        pass: a prompt of 32 tokens costs 32 positions, not the cache's S. Positions past
        `filled` that a pass also writes are rewritten when their turn comes, and the
        causal mask hides them until then."""
        batch, length = tf.shape(tokens)[0], tokens.shape[1]
        chunk = min(_PREFILL, length)

        def fill(done, cache):
            at = tf.minimum(done, length - chunk)  # the last pass may overlap the one before
            piece = tf.gather(tokens, at + tf.range(chunk), axis=1)
            return done + chunk, self.model.call_with_cache(piece, cache, at)[1]

        _, cache = tf.while_loop(lambda done, cache: done < filled, fill,
                                 (tf.constant(0), self.model.empty_cache(batch, length)))
        return cache

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
        """Next ids [B] from logits [B, V]: argmax at temperature 0, else a filtered draw
        (only the one asked for is computed: this runs at every decoding step)."""
        logits = tf.cast(logits, tf.float32)

        def greedy():
            return tf.argmax(tf.where(self.banned[None, :], _NEG, logits), axis=-1,
                             output_type=tf.int32)

        def drawn():
            vocab = tf.shape(logits)[-1]
            # Banned after scaling: a huge temperature would otherwise bring them back level.
            scaled = tf.where(self.banned[None, :], _NEG, logits / tf.maximum(temperature, 1e-6))
            scaled = tf.cond(top_k > 0, lambda: _top_k_filter(scaled, tf.minimum(top_k, vocab)),
                             lambda: scaled)
            scaled = tf.cond(tf.logical_and(top_p > 0.0, top_p < 1.0),
                             lambda: _top_p_filter(scaled, top_p), lambda: scaled)
            return _draw(scaled, seed)

        return tf.cond(temperature > 0.0, drawn, greedy)

    def _generate_outputs(self, tokens, lengths, ends) -> dict:
        """`generate`'s outputs: {"completion" string [B], "new_tokens" int32 [B] (before
        any eos), "ended" bool [B]} (arguments as for `_completion_text`)."""
        positions = tf.range(self.window)[None, :]
        generated = tf.logical_and(positions >= lengths[:, None], positions < ends[:, None])
        is_eos = tf.logical_and(generated, tf.equal(tokens, self.eos_id))
        before_eos = tf.equal(tf.cumsum(tf.cast(is_eos, tf.int32), axis=1), 0)
        kept = tf.logical_and(generated, before_eos)
        return {"completion": self._completion_text(tokens, lengths, ends),
                "new_tokens": tf.reduce_sum(tf.cast(kept, tf.int32), axis=1),
                "ended": tf.reduce_any(is_eos, axis=1)}

    def _completion_text(self, tokens, lengths, ends):
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


class TextToTextExport(LanguageModelExport):
    """task.type text_to_text: the causal LM's signatures, whose `generate` answers an
    input with its target, and `generate_examples`.

    Args:
        model: the trained `CausalLM`.
        tokenizer: the tokenizer it was trained with.
        window: L, the examples' sequence length.
        separator_ids: the separator's token ids (as the transform encoded it).
        input_budget: B, the input tokens a prompt keeps.
        max_target_tokens: T, the longest target (generate_examples writes T + eos).
    """

    SIGNATURES = ("generate", "generate_examples", "score", "score_examples")

    def __init__(self, model, tokenizer: TextTokenizer, window: int, separator_ids: list[int],
                 input_budget: int, max_target_tokens: int):
        super().__init__(model, tokenizer, window)
        self.separator_ids = tf.constant(list(separator_ids), tf.int32)
        self.input_budget = int(input_budget)
        self.max_target_tokens = int(max_target_tokens)

    def _prompts(self, prompt, new):
        """Input strings [B] -> `[bos] + ids[:B] + separator`, as in training (the input
        budget leaves room for the target, so `new` cuts nothing)."""
        ids = self.tokenizer.tokenize(prompt)[:, :self.input_budget]
        return self._framed(ids, self.separator_ids)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def generate_examples(self, examples):
        parsed = self._parse(examples, ("token_ids",),
                             target_start=tf.io.FixedLenFeature([], tf.int64))
        lengths = tf.cast(parsed["target_start"], tf.int32)
        positions = tf.range(self.window)[None, :]
        # Only the prompt is kept: the target the example holds must not be seen.
        tokens = tf.where(positions < lengths[:, None], parsed["token_ids"], self.pad_id)
        ends = tf.minimum(lengths + self.max_target_tokens + 1, self.window)
        tokens = self._decode_causal(tokens, lengths, ends, tf.constant(0.0), tf.constant(0),
                                     tf.constant(1.0), tf.constant(0))
        return {"prediction": self._completion_text(tokens, lengths, ends)}


class ClassifierExport(ServingModule):
    """task.type classification: `classify` and `classify_examples`.

    Args:
        model: the trained `SequenceClassifier`.
        tokenizer: the tokenizer it was trained with.
        window: L, the examples' sequence length.
        labels: the label vocabulary (id order).
    """

    SIGNATURES = ("classify", "classify_examples")

    def __init__(self, model, tokenizer: TextTokenizer, window: int, labels: list[str]):
        super().__init__(model, tokenizer, window, name="classifier")
        self.labels = tf.constant(list(labels), tf.string)

    def _probabilities(self, tokens, segments):
        logits = self.model({"token_ids": tokens, "segment_ids": segments}, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def classify(self, text):
        ids = self.tokenizer.tokenize(text)[:, :self.window - 2]
        sequences = self._framed(ids, tf.constant([self.eos_id], tf.int32))
        segments = tf.ones_like(sequences).to_tensor(default_value=0, shape=[None, self.window])
        probabilities = self._probabilities(self._padded(sequences), segments)
        best = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"label": tf.gather(self.labels, best), "label_id": best,
                "probabilities": probabilities,
                "classes": tf.tile(self.labels[None, :], [tf.shape(best)[0], 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def classify_examples(self, examples):
        parsed = self._parse(examples, ("token_ids", "segment_ids"))
        return {"probabilities": self._probabilities(parsed["token_ids"],
                                                     parsed["segment_ids"])}


def _keep_last(sequences: tf.RaggedTensor, count) -> tf.RaggedTensor:
    """The last `count` items of each row."""
    lengths = tf.cast(sequences.row_lengths(), tf.int32)
    starts = tf.maximum(lengths - count, 0)
    offsets = tf.cast(sequences.row_starts(), tf.int32)
    indices = tf.ragged.range(offsets + starts, offsets + lengths)
    return tf.gather(sequences.flat_values, indices)


# `_draw` picks a block of this many ids, then an id inside it.
_DRAW_BLOCK = 128


def _draw(logits, seed):
    """One id per row of logits [B, V], drawn with probability softmax(logits): by the
    inverse of the cumulative distribution at one uniform number per row, in two levels
    (which block of `_DRAW_BLOCK` ids, then which id in it). A cumulative sum over all V
    ids compiles to a slow scan on the CPU, and `tf.random.stateless_categorical` takes
    two logarithms of V numbers per row: 4x and 40x the time of this at V 8192
    (bench/NOTES.md, generation)."""
    rows, vocab = tf.shape(logits)[0], tf.shape(logits)[1]
    weights = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
    blocks = (vocab + _DRAW_BLOCK - 1) // _DRAW_BLOCK
    weights = tf.reshape(tf.pad(weights, [[0, 0], [0, blocks * _DRAW_BLOCK - vocab]]),
                         [rows, blocks, _DRAW_BLOCK])
    totals = tf.reduce_sum(weights, axis=-1)
    cumulative = tf.cumsum(totals, axis=-1)
    point = tf.random.stateless_uniform([rows], seed) * cumulative[:, -1]
    block = _first_passing(cumulative, totals, point)
    # What is left of the point inside its block (rounding may take it just below 0).
    inside = tf.maximum(point - tf.gather(cumulative - totals, block, batch_dims=1), 0.0)
    chosen = tf.gather(weights, block, batch_dims=1)
    return block * _DRAW_BLOCK + _first_passing(tf.cumsum(chosen, axis=-1), chosen, inside)


def _first_passing(cumulative, weights, point):
    """Per row, the first index whose cumulative weight passes `point` [B]: indices of
    weight 0 (banned, filtered, padding) add nothing and are never the first. Rounding can
    put the point on the total: the last index of any weight then."""
    first = tf.reduce_sum(tf.cast(cumulative <= point[:, None], tf.int32), axis=-1)
    last = tf.shape(weights)[-1] - 1 - tf.argmax(tf.reverse(weights, [-1]) > 0, axis=-1,
                                                 output_type=tf.int32)
    return tf.minimum(first, last)


def _top_k_filter(logits, k):
    # The k-th largest by sorting: XLA's top_k needs k known when it compiles.
    kth = tf.gather(tf.sort(logits, axis=-1, direction="DESCENDING"), [k - 1], axis=1)
    return tf.where(logits < kth, _NEG, logits)


def _top_p_filter(logits, top_p):
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
    # The smallest logit still inside the nucleus (the first token always is).
    cutoff = tf.reduce_min(tf.where(before < top_p, ordered, ordered[:, :1]), axis=-1,
                           keepdims=True)
    return tf.where(logits < cutoff, _NEG, logits)


def export_for(model, tokenizer: TextTokenizer, window: int,
               task: dict | None = None) -> ServingModule:
    """The export of the examples' `task.type`.

    Args:
        model: the trained Keras model (`CausalLM` or `MaskedLM` for lm, `CausalLM` for
            text_to_text, `SequenceClassifier` for classification).
        tokenizer: its tokenizer.
        window: the sequence length it was trained on.
        task: the examples' `task` entry (`feature_spec.json`); None or {} means lm.

    Returns:
        The `ServingModule` whose `signature_functions()` the SavedModel serves.
    """
    task = task or {}
    kind = task.get("type", "lm")
    if kind == "lm":
        return LanguageModelExport(model, tokenizer, window)
    if kind == "classification":
        return ClassifierExport(model, tokenizer, window, task["labels"])
    if kind == "text_to_text":
        return TextToTextExport(model, tokenizer, window, task["separator_ids"],
                                task["input_budget"], task["max_target_tokens"])
    raise ValueError(f"task.type {kind!r} has no export")


def save_export(model, tokenizer: TextTokenizer, window: int, directory: str,
                task: dict | None = None) -> None:
    """Write the SavedModel with the signatures of the examples' `task.type`.

    Args:
        model: the trained Keras model (see `export_for`).
        tokenizer: its tokenizer.
        window: the sequence length it was trained on.
        directory: the SavedModel directory to create.
        task: the examples' `task` entry (`feature_spec.json`); None or {} means lm.
    """
    module = export_for(model, tokenizer, window, task)
    tf.saved_model.save(module, directory, signatures=module.signature_functions())
