"""Throughput and router overhead of ``rag-routing serve`` on loopback.

Run: ``python benchmarks/serve.py [--data ../shared/data] [--router knn] [--requests 2000] [--concurrency 32]``.

A server process (uvicorn, one worker) serves a router fitted on 600 RouteLLM MMLU queries (TF-IDF-LSA
features) with instant stand-in generators, so what is measured is the HTTP layer, auth, budgets, the ledger
and the router, not an LLM. A client process sends MMLU questions with ``httpx.AsyncClient`` at a fixed
concurrency, once with ``model="auto"`` (routed) and once forcing a candidate (no routing), then streaming.
Printed: requests/s, end-to-end p50/p99 latency, and the router's own p50/p99 time per request (the
``router_seconds`` the server reports in ``x_rag_routing``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
KEY = "sk-bench-0123456789"


def _queries(data: Path, n_train: int, seed: int) -> tuple[Any, list[str]]:
    from rag_routing.evaluation.loaders import load_routellm

    full = load_routellm(data / "routellm" / "mmlu" / "responses")
    rows = np.random.default_rng(seed).permutation(len(full))
    return full.subset(np.sort(rows[:n_train])), [full.queries[i] for i in rows[n_train:n_train + 2000]]


def serve(args: argparse.Namespace) -> None:
    """The server process."""
    from rag_routing.embeddings import TfidfFeaturizer
    from rag_routing.routers.registry import create_router
    from rag_routing.server import create_app
    from rag_routing.server.app import serve as run

    train, _ = _queries(args.data, 600, args.seed)
    router = create_router(args.router, featurizer=TfidfFeaturizer(n_components=128)).fit(train)
    generators = {c: (lambda messages, _c=c: f"answer from {_c}") for c in router.candidates_}
    app = create_app(router, generators, {KEY: {"principal": "bench", "max_usd": 1e9}})
    run(app, host="127.0.0.1", port=args.port, log_level="warning")


async def _load(url: str, queries: list[str], model: str, n: int, concurrency: int,
                stream: bool) -> tuple[float, list[float], list[float]]:
    import httpx

    latencies: list[float] = []
    router_seconds: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(i: int) -> None:
            body = {"model": model, "stream": stream, "max_tokens": 16,
                    "messages": [{"role": "user", "content": queries[i % len(queries)]}]}
            async with semaphore:
                started = time.perf_counter()
                r = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
                latencies.append(time.perf_counter() - started)
            r.raise_for_status()
            if not stream:
                router_seconds.append(r.json()["x_rag_routing"]["router_seconds"])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started), latencies, router_seconds


def _pct(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) * 1000 if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--router", default="knn")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_only:
        serve(args)
        return 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve-only", "--port", str(port), "--data",
                               str(args.data), "--router", args.router, "--seed", str(args.seed)])
    try:
        import httpx

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        _, queries = _queries(args.data, 600, args.seed)
        candidates = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
        forced = candidates[-1]["id"]
        asyncio.run(_load(url, queries, "auto", 100, args.concurrency, False))  # warm-up
        print(f"rag-routing serve on loopback: router={args.router} (TF-IDF-LSA-128, 600 MMLU queries), "
              f"{args.requests} requests, concurrency {args.concurrency}, one uvicorn worker, instant generators")
        print(f"{'mode':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'router p50 ms':>15}{'router p99 ms':>15}")
        for label, model, stream in (("routed (auto)", "auto", False), (f"forced ({forced})", forced, False),
                                     ("routed, streaming", "auto", True)):
            rps, lat, router = asyncio.run(_load(url, queries, model, args.requests, args.concurrency, stream))
            print(f"{label:<34}{rps:>9.0f}{_pct(lat, 0.5):>9.1f}{_pct(lat, 0.99):>9.1f}"
                  f"{_pct(router, 0.5) if model == 'auto' and not stream else float('nan'):>15.2f}"
                  f"{_pct(router, 0.99) if model == 'auto' and not stream else float('nan'):>15.2f}")
        print(f"(machine: {os.cpu_count()} CPUs, load average {statistics.fmean(os.getloadavg()):.1f})")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
