"""The peer of `bench.checkpoint_import`, run by `.venv-ref/bin/python` (torch, transformers).

    python hf_checkpoint.py make OUT_DIR     a random GPT-2 small (124M) checkpoint
    python hf_checkpoint.py load OUT_DIR     transformers' from_pretrained of it: one JSON
                                             line {"seconds", "peak_rss_mb", "before_mb"}
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    command, directory = sys.argv[1:3]
    import torch
    import transformers

    if command == "make":
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(directory)
        return
    before = _rss_mb()
    start = time.perf_counter()
    model = transformers.GPT2LMHeadModel.from_pretrained(directory, dtype=torch.float32)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "before_mb": before,
                      "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
