"""`lmpipe serve` under load on loopback: throughput and latency with 1, 4 and 16
concurrent clients, a push of a new version in the middle of a 16-client load, and the
bad requests of issue 22 sent during a load.

The model is exported here at the benchmark shape (an untrained causal LM of `--vocab`
ids, `--width`, `--layers`, `--heads`, window `--sequence`, with a BPE tokenizer trained on
the demo corpus), plus `runs/demo/serving` when it exists (`--demo`). Each client asks
for `--new` new tokens per request (greedy, so that every request does the same work),
for at most `--requests` requests or `--seconds` seconds per level.

    python -m bench.serving_load [--clients 1 4 16 --new 32 --requests 64 --seconds 60]
        [--vocab 8192 --width 256 --layers 4 --heads 4 --sequence 128] [--work DIR]
        [--demo runs/demo/serving] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAD_REQUESTS = [b"{", b"[]", b'{"instances": [{}]}', b'{"instances": [{"prompt": 5}]}',
                b'{"instances": [{"prompt": ""}]}',
                json.dumps({"instances": [{"prompt": "x" * 10**6}]}).encode(),
                b'{"instances": [{"prompt": "a", "max_new_tokens": -1}]}',
                b'{"instances": [{"prompt": "a", "max_new_tokens": 1000000000}]}',
                b'{"instances": [{"prompt": "a", "temperature": NaN}]}',
                b'{"signature_name": "nope", "instances": ["a"]}']


def export_model(work: Path, args) -> Path:
    """A SavedModel at the benchmark shape under `work` (reused when already there)."""
    saved = work / f"model-v{args.vocab}-w{args.width}-l{args.layers}-h{args.heads}"
    if (saved / "saved_model.pb").exists():
        return saved
    from bench.train_throughput import _tokenizer
    from models.export import save_export
    from models.factory import build_model
    from models.tokenizer import load_tokenizer
    from pipeline import demo_corpus
    from pipeline.core.config import ModelConfig, TaskConfig

    corpus = demo_corpus.build(work / "corpus")
    with open(corpus["file"], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    shutil.rmtree(work / "tokenizer", ignore_errors=True)
    _tokenizer(work / "tokenizer", texts, args.vocab)
    config = ModelConfig(num_layers=args.layers, hidden_dim=args.width, num_heads=args.heads,
                         intermediate_dim=4 * args.width, max_sequence_length=args.sequence)
    model = build_model(config, TaskConfig(), args.vocab)
    save_export(model, load_tokenizer(str(work / "tokenizer")), args.sequence, str(saved))
    return saved


def publish(saved_model: Path, serving: Path, number: int) -> None:
    """Publish a copy as version `number`, as `push` does (renamed into place)."""
    serving.mkdir(parents=True, exist_ok=True)
    tmp = serving / f".{number}.tmp-bench"
    shutil.copytree(saved_model, tmp)
    os.rename(tmp, serving / str(number))


def start_server(model: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`lmpipe serve` on a free loopback port; the process and its URL once ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--model", str(model), "--port", "0",
         "--host", "127.0.0.1", *flags], cwd=REPO, stdout=subprocess.PIPE, text=True,
        stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    ready = process.stdout.readline().strip()
    if not ready:
        raise SystemExit(f"bench: lmpipe serve --model {model} did not start")
    return process, ready.rsplit(" ", 1)[-1]


async def _client(session, url, new, until, budget, results):
    body = {"instances": [{"prompt": "The pipeline", "max_new_tokens": new, "temperature": 0}]}
    while time.monotonic() < until and budget():
        started = time.monotonic()
        async with session.post(url + "/v1/models/lmpipe:predict", json=body) as response:
            answer = await response.json()
        results.append({"status": response.status, "seconds": time.monotonic() - started,
                        "version": answer.get("model_version")})


async def load(url: str, clients: int, new: int, requests: int, seconds: float,
               during=None) -> dict:
    """`clients` concurrent clients until `requests` answers or `seconds` have passed;
    `during` (a blocking function) runs in a thread meanwhile."""
    import aiohttp

    results: list[dict] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        side = (asyncio.get_running_loop().run_in_executor(None, during) if during
                else asyncio.sleep(0))
        await asyncio.gather(side, *(
            _client(session, url, new, started + seconds, lambda: len(results) < requests, results)
            for _ in range(clients)))
    elapsed = time.monotonic() - started
    latencies = sorted(r["seconds"] for r in results)
    ok = [r for r in results if r["status"] == 200]
    return {"clients": clients, "requests": len(results), "failed": len(results) - len(ok),
            "new_tokens_per_second": round(len(ok) * new / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
            "versions": sorted({str(r["version"]) for r in ok})}


async def bad_requests(url: str) -> list[int]:
    """The status of each of `BAD_REQUESTS` (all must be 4xx)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        statuses = []
        for data in BAD_REQUESTS:
            async with session.post(url + "/v1/models/lmpipe:predict", data=data) as response:
                statuses.append(response.status)
        return statuses


def throughput(model: Path, args) -> dict:
    """Throughput and latency at each client count, and the 16-vs-1 ratio."""
    process, url = start_server(model)
    try:
        levels = [asyncio.run(load(url, n, args.new, args.requests, args.seconds))
                  for n in args.clients]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    ratio = levels[-1]["new_tokens_per_second"] / max(levels[0]["new_tokens_per_second"], 1e-9)
    return {"levels": levels, f"throughput_{args.clients[-1]}_vs_{args.clients[0]}": round(ratio, 2),
            "server_exit_status": process.returncode}


def push_under_load(saved_model: Path, work: Path, args) -> dict:
    """A 16-client load during which version 2 is pushed, and the bad requests."""
    serving = Path(tempfile.mkdtemp(dir=work, prefix="serving-"))
    publish(saved_model, serving, 1)
    process, url = start_server(serving, "--poll-seconds", "0.5")
    try:
        def push():
            time.sleep(1.0)
            publish(saved_model, serving, 2)

        swapped = asyncio.run(load(url, args.clients[-1], args.new, 10**9, args.seconds, push))
        hostile = asyncio.run(_hostile(url, args))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        shutil.rmtree(serving, ignore_errors=True)
    return {"push_mid_load": swapped, "bad_requests_during_load": hostile,
            "server_exit_status": process.returncode}


async def _hostile(url: str, args) -> dict:
    statuses, loaded = await asyncio.gather(
        bad_requests(url), load(url, args.clients[-1], args.new, args.requests, args.seconds))
    return {"statuses": statuses, "all_4xx": all(400 <= s < 500 for s in statuses),
            "load_failed": loaded["failed"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--new", type=int, default=32, help="new tokens per request")
    parser.add_argument("--requests", type=int, default=64, help="most requests per level")
    parser.add_argument("--seconds", type=float, default=60.0, help="most seconds per level")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "lmpipe-bench-serving"))
    parser.add_argument("--demo", default=str(REPO / "runs" / "demo" / "serving"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    saved_model = export_model(work, args)
    report = {"benchmark_shape": throughput(saved_model, args),
              **push_under_load(saved_model, work, args)}
    if os.path.isdir(args.demo):
        report["demo_model"] = throughput(Path(args.demo), args)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
