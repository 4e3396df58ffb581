"""Samples: what the model writes, beside what it should have written.

A language model: prompts are the first `sample_prompt_words` words of eval documents
(taken in shard order, round-robin over domains, so every domain shows up). Each gets a
greedy and a sampled continuation from the SavedModel's `generate` signature, scored
against the document's true next words with ROUGE-L (F1, `rouge_score`) and BLEU
(`sacrebleu`, the libraries TFMA's own Rouge and Bleu metrics use).

A text-to-text task: the first eval examples' inputs, their greedy completions from the
`generate_examples` signature, and their references (`complete_examples`).
"""

from __future__ import annotations

import gzip
import io
import json
import re

from pipeline.core.errors import UsageError

SAMPLES_FILE = "samples.json"
KINDS = ("greedy", "sampled")
# Read at most this many eval documents per requested sample when choosing prompts.
_SCAN_PER_SAMPLE = 50
_WORD = re.compile(r"\S+")


def pick_prompts(documents_dir: str, count: int, prompt_words: int) -> list[dict]:
    """Prompts from the documents artifact's eval split.

    Args:
        documents_dir: the ingest component's documents artifact.
        count: how many prompts.
        prompt_words: words per prompt; a document needs at least one word more.

    Returns:
        [{"domain", "prompt", "rest"}], `rest` being the document after the prompt.
    """
    by_domain: dict[str, list[dict]] = {}
    seen = set()
    for document in _eval_documents(documents_dir, count * _SCAN_PER_SAMPLE):
        split = split_prompt(document.get("text", ""), prompt_words)
        # Documents that begin alike would show the same prompt twice.
        if split is not None and split[0] not in seen:
            seen.add(split[0])
            by_domain.setdefault(document.get("domain") or "", []).append(
                {"domain": document.get("domain") or "", "prompt": split[0], "rest": split[1]})
    chosen = []
    while len(chosen) < count and any(by_domain.values()):
        for queue in by_domain.values():
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def split_prompt(text: str, words: int) -> tuple[str, str] | None:
    """(the first `words` words, the rest), or None if the text has no word after them."""
    matches = list(_WORD.finditer(text))
    if len(matches) <= words:
        return None
    end = matches[words - 1].end()
    return text[:end], text[end:]


def _eval_documents(documents_dir: str, limit: int):
    from pipeline.core import files
    from pipeline.core.contracts import documents

    try:
        stats = files.read_json(files.join(documents_dir, documents.STATS_FILE))
        paths = documents.split_paths(documents_dir, stats, "eval")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{documents_dir}: unreadable documents artifact "
                         f"({err.__class__.__name__})") from None
    seen = 0
    for path in paths:
        for line in _lines(path):
            if seen >= limit:
                return
            seen += 1
            yield json.loads(line)


def _lines(path: str):
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    # Read the bytes as they are and unzip here: the shard names say `.jsonl.gz`.
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    yield from (line for line in io.StringIO(data.decode("utf-8")) if line.strip())


def continue_prompts(saved_model: str, prompts: list[dict], evaluation) -> dict:
    """Greedy and sampled continuations of `prompts`, with ROUGE-L and BLEU.

    Args:
        saved_model: the candidate's SavedModel directory.
        prompts: from `pick_prompts`.
        evaluation: the `EvaluationConfig` (sampling settings, seed).

    Returns:
        The content of `samples.json`.
    """
    signature = _generate_signature(saved_model)
    settings = {"max_new_tokens": evaluation.sample_max_tokens,
                "temperature": evaluation.sample_temperature, "top_k": evaluation.sample_top_k,
                "top_p": evaluation.sample_top_p, "seed": evaluation.seed}
    texts = [p["prompt"] for p in prompts]
    outputs = {"greedy": _generate(signature, texts, {**settings, "temperature": 0.0}),
               "sampled": _generate(signature, texts, settings)}
    samples = []
    for i, prompt in enumerate(prompts):
        sample = {"domain": prompt["domain"], "prompt": prompt["prompt"]}
        for kind in KINDS:
            continuation = outputs[kind][i]
            reference = reference_for(prompt["rest"], continuation)
            sample[kind] = continuation
            sample[f"{kind}_reference"] = reference
            sample[f"{kind}_rouge_l"] = rouge_l(continuation, reference)
            sample[f"{kind}_bleu"] = sentence_bleu(continuation, reference)
        samples.append(sample)
    return {"settings": settings, "samples": samples, "summary": summarize(samples)}


def _generate_signature(saved_model: str):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the model uses)

    model = tf.saved_model.load(saved_model)
    if "generate" not in model.signatures:
        raise UsageError(f"{saved_model}: no 'generate' signature "
                         f"(has {', '.join(sorted(model.signatures)) or 'none'})")
    return model.signatures["generate"]


def _generate(signature, prompts: list[str], settings: dict) -> list[str]:
    import tensorflow as tf

    result = signature(prompt=tf.constant(prompts, tf.string),
                       max_new_tokens=tf.constant(settings["max_new_tokens"], tf.int32),
                       temperature=tf.constant(settings["temperature"], tf.float32),
                       top_k=tf.constant(settings["top_k"], tf.int32),
                       top_p=tf.constant(settings["top_p"], tf.float32),
                       seed=tf.constant(settings["seed"], tf.int32))
    return [text.decode("utf-8", "replace") for text in result["completion"].numpy()]


def reference_for(rest: str, continuation: str) -> str:
    """The document's true next words, as many as the continuation has (at least one)."""
    words = max(1, len(_WORD.findall(continuation)))
    matches = list(_WORD.finditer(rest))
    return rest[:matches[min(words, len(matches)) - 1].end()].strip() if matches else ""


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 of a continuation against the true text."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return float(scorer.score(reference, hypothesis)["rougeL"].fmeasure)


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Sentence BLEU (0-100) of a continuation against the true text."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(hypothesis.strip(), [reference]).score)


def summarize(samples: list[dict]) -> dict:
    """Per kind: the mean ROUGE-L and mean sentence BLEU over the samples (None if none)."""
    summary = {}
    for kind in KINDS:
        count = len(samples)
        summary[kind] = {
            metric: (sum(s[f"{kind}_{metric}"] for s in samples) / count if count else None)
            for metric in ("rouge_l", "bleu")}
    return summary


def complete_examples(saved_model: str, pattern: str, gzip: bool, count: int) -> dict:
    """Greedy completions of the first `count` eval examples beside their references.

    Args:
        saved_model: the candidate's SavedModel directory (a text-to-text export).
        pattern: the eval shards' glob.
        gzip: whether they are gzipped.
        count: how many examples.

    Returns:
        The content of `samples.json`.
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the tokenizer's ops)

    records = (tf.data.TFRecordDataset(tf.io.gfile.glob(pattern),
                                       compression_type="GZIP" if gzip else "")
               .take(count))
    serialized = [record.numpy() for record in records]
    signature = tf.saved_model.load(saved_model).signatures["generate_examples"]
    predictions = signature(examples=tf.constant(serialized))["prediction"].numpy()
    text = {"input_text": tf.io.FixedLenFeature([], tf.string),
            "target_text": tf.io.FixedLenFeature([], tf.string)}
    samples = []
    for record, prediction in zip(serialized, predictions):
        parsed = tf.io.parse_single_example(record, text)
        samples.append({"input": parsed["input_text"].numpy().decode("utf-8", "replace"),
                        "reference": parsed["target_text"].numpy().decode("utf-8", "replace"),
                        "completion": prediction.decode("utf-8", "replace")})
    return {"decoding": "greedy", "samples": samples}
