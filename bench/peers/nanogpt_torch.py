"""The PyTorch peer: a nanoGPT-style decoder trained in eager mode on the CPU.

Same shape as lmpipe's `gpt` family: learned token and position embeddings, pre-LayerNorm
blocks with a fused QKV projection, `F.scaled_dot_product_attention(is_causal=True)`, a GELU
MLP, a final LayerNorm and an untied output head; AdamW (weight decay on matrices only,
betas 0.9/0.95, as lmpipe's defaults) with global-norm clipping at 1.0. Runs only in the
peer venv (`make bench-peer`); lmpipe itself never imports torch.

    .venv-peer/bin/python -m bench.peers.nanogpt_torch --steps 30 [--vocab 8192 --width 256
        --layers 4 --heads 4 --mlp 1024 --sequence 128 --batch 16 --threads 2,1]

Prints one JSON line: tokens/s (steady state after warm-up) at the best of the thread
counts tried (on a busy 2-core machine OpenMP's 2 threads can lose to 1), parameters,
losses, and the float32 matmul rate torch reaches on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_WARMUP = 3


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x)); x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, mlp)
        self.fc_out = nn.Linear(mlp, width)

    def forward(self, x):
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(batch, length, width))
        return x + self.fc_out(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    """Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, vocab: int, width: int, layers: int, heads: int, mlp: int, sequence: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(sequence, width)
        self.blocks = nn.ModuleList(Block(width, heads, mlp) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx):
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def make_optimizer(model: GPT, learning_rate: float = 1e-3) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices only (nanoGPT's `configure_optimizers`)."""
    decay = [p for p in model.parameters() if p.dim() >= 2 and p is not model.wte.weight
             and p is not model.wpe.weight]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=learning_rate, betas=(0.9, 0.95), eps=1e-8)


def matmul_peak() -> float:
    """Best float32 FLOP/s of a few square matmuls (1024, 2048), as lmpipe measures its own."""
    best = 0.0
    for size in (1024, 2048):
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        for _ in range(5):
            started = time.perf_counter()
            torch.mm(a, b).sum().item()
            best = max(best, 2.0 * size ** 3 / (time.perf_counter() - started))
    return best


def train(args) -> dict:
    """Train `args.steps` steps on random windows; steady-state tokens/s after warm-up."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = GPT(args.vocab, args.width, args.layers, args.heads, args.mlp, args.sequence)
    optimizer = make_optimizer(model)
    times, losses = [], []
    for _ in range(args.steps):
        started = time.perf_counter()
        # nanoGPT's get_batch: windows from a token array; here random token ids.
        tokens = torch.from_numpy(rng.integers(0, args.vocab, (args.batch, args.sequence + 1)))
        x, y = tokens[:, :-1], tokens[:, 1:]
        loss = F.cross_entropy(model(x).view(-1, args.vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - started)
    steady = times[_WARMUP:]
    return {"tokens_per_second": args.batch * args.sequence * len(steady) / sum(steady),
            "first_step_seconds": times[0], "steps": args.steps,
            "parameters": sum(p.numel() for p in model.parameters()),
            "first_loss": losses[0], "final_loss": losses[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=1024)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", default="2,1",
                        help="torch thread counts to try, comma-separated; the best is reported")
    parser.add_argument("--params-only", action="store_true",
                        help="print the parameter count and exit")
    args = parser.parse_args(argv)
    if args.params_only:
        model = GPT(args.vocab, args.width, args.layers, args.heads, args.mlp, args.sequence)
        print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))
        return 0
    by_threads = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        by_threads[threads] = train(args)
    best = max(by_threads, key=lambda t: by_threads[t]["tokens_per_second"])
    torch.set_num_threads(best)
    result = {**by_threads[best], "threads": best, "torch": torch.__version__,
              "tokens_per_second_by_threads": {t: r["tokens_per_second"]
                                               for t, r in by_threads.items()},
              "matmul_peak_flops": matmul_peak()}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
