"""Tokenizer training time: tensorflow-text's WordPiece learner against SentencePiece BPE,
each on a sample of the data benchmark's corpus (`bench.data_corpus`, Python source).

The two trainers the `tokenizer` component runs (`wordpiece_training.train_vocab`,
`sentencepiece_training.train_model`), timed in this process on samples drawn as the
component draws them (`tokenizer_sample.sample_texts`), `--repeats` times each, alternating.
Prints the seconds of every run and the MB/s of each trainer.

    .venv/bin/python -m bench.tokenizer_speed [--corpus /tmp/lmpipe-bench/corpus/corpus.jsonl]
        [--wordpiece-mb 2] [--bpe-mb 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path,
                        default=Path("/tmp/lmpipe-bench/corpus/corpus.jsonl"),
                        help="JSONL with a `text` field (python -m bench.data_corpus makes one)")
    parser.add_argument("--wordpiece-mb", type=float, default=2.0)
    parser.add_argument("--bpe-mb", type=float, default=10.0)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    return parser.parse_args(argv)


def read_sample(corpus: Path, megabytes: float, seed: int = 0) -> list[str]:
    """The component's sample of `megabytes` from the corpus's texts."""
    from components.tokenizer.sample import sample_texts

    if not corpus.is_file():
        sys.exit(f"{corpus}: no such file (python -m bench.data_corpus writes it)")
    with corpus.open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    total = sum(len(t.encode("utf-8")) for t in texts)
    return sample_texts(texts, total, int(megabytes * 1e6), seed)


def main(argv=None) -> int:
    from components.tokenizer import sentencepiece as sentencepiece_training, wordpiece as wordpiece_training
    from pipeline.core.config import TokenizerConfig

    args = parse_args(argv)
    trainers = {
        "wordpiece": (read_sample(args.corpus, args.wordpiece_mb),
                      TokenizerConfig(type="wordpiece", vocab_size=args.vocab_size),
                      lambda texts, config: wordpiece_training.train_vocab(texts, config)),
        "bpe": (read_sample(args.corpus, args.bpe_mb),
                TokenizerConfig(type="bpe", vocab_size=args.vocab_size),
                lambda texts, config: sentencepiece_training.train_model(
                    texts, config, config.character_coverage)),
    }
    seconds = {name: [] for name in trainers}
    for repeat in range(args.repeats):
        for name, (texts, config, train) in trainers.items():
            started = time.perf_counter()
            train(texts, config)
            seconds[name].append(time.perf_counter() - started)
            print(f"run {repeat + 1} {name}: {seconds[name][-1]:.1f} s", flush=True)
    for name, (texts, _, _) in trainers.items():
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        median = statistics.median(seconds[name])
        print(f"{name}: {megabytes:.1f} MB sample, median {median:.1f} s, "
              f"{megabytes / median:.2f} MB/s")
    return 0


if __name__ == "__main__":
    from pipeline.terminal import quiet_script

    quiet_script()
    sys.exit(main())
