"""Throughput, latency and memory of ``rag-routing serve``: dynamic batching against routing each request alone.

Run: ``python benchmarks/serve.py [--data ../shared/data] [--router knn] [--featurizer minilm]
[--requests 240] [--concurrency 1,8,32] [--window-ms 2,0] [--max-batch 8]``.

A router (default: knn on the default MiniLM features) is fitted on 600 RouteLLM MMLU queries and saved; then,
one after the other, two server processes load it the way ``rag-routing serve`` does (``load_router``), one
routing each request alone (``batch_window=None``, the path before batching) and one batching concurrent
requests (:class:`~rag_routing.server.batching.RouteBatcher`), once per ``--window-ms`` value (0: a batch
takes only what queued while the previous one ran). Generators answer instantly, so
what is measured is the HTTP layer, auth, budgets, the ledger and the router: every request carries a new
MMLU question, tagged with a run token so that no embedding is found in the on-disk cache. Printed per mode
and concurrency: requests/s, end-to-end p50/p99
latency, the router's own p50 (``router_seconds``, which includes the wait for a batch), the server's CPU
time per request (user + system, all threads, from ``/proc``: the figure that does not depend on how many
other processes share the cores) and its RSS (current and peak). Last, the floor: the router's featurizer alone
in the benchmark's own process, CPU ms per new question one at a time and in batches, and the requests per
second those costs allow on this machine's cores (:func:`featurisation_floor`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
KEY = "sk-bench-0123456789"


def _split(data: Path, n_train: int, seed: int) -> tuple[Any, list[str]]:
    from rag_routing.evaluation.loaders import load_routellm

    full = load_routellm(data / "routellm" / "mmlu" / "responses")
    rows = np.random.default_rng(seed).permutation(len(full))
    return full.subset(np.sort(rows[:n_train])), [full.queries[i] for i in rows[n_train:]]


def serve(router_file: str, port: int, window_ms: float | None, max_batch: int) -> None:
    """The server process: the saved router behind the endpoint, instant generators."""
    from rag_routing.routers.base import load_router
    from rag_routing.server import create_app
    from rag_routing.server.app import serve as run

    router = load_router(router_file)
    generators = {c: (lambda messages, max_tokens=16, _c=c: f"answer from {_c}") for c in router.candidates_}
    app = create_app(router, generators, {KEY: {"principal": "bench", "max_usd": 1e9}},
                     batch_window=None if window_ms is None else window_ms / 1000, max_batch=max_batch)
    app.state.service.warm_up()
    run(app, host="127.0.0.1", port=port, log_level="warning")


async def _load(url: str, queries: list[str], concurrency: int) -> tuple[float, list[float], list[float]]:
    import httpx

    latencies: list[float] = []
    router_seconds: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(query: str) -> None:
            body = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": query}]}
            async with semaphore:
                started = time.perf_counter()
                r = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
                latencies.append(time.perf_counter() - started)
            r.raise_for_status()
            router_seconds.append(r.json()["x_rag_routing"]["router_seconds"])

        started = time.perf_counter()
        await asyncio.gather(*(one(q) for q in queries))
        return len(queries) / (time.perf_counter() - started), latencies, router_seconds


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _ms(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) * 1000


def featurisation_floor(router_file: str, queries: list[str], batch: int) -> tuple[float, float] | None:
    """CPU ms per new question of the router's featurizer alone, in this process and on one thread (CPU time that
    is all compute, none of it a worker thread spinning while it waits): one question at a time, and in
    length-sorted batches of ``batch`` (what a batching server does). ``None`` for a router without features.

    Every request of an unbatched server embeds its question once, so ``cores * 1000 / ms`` requests per
    second is a ceiling for it before HTTP, auth, budgets and the ledger add their own CPU.
    """
    from rag_routing.routers.base import load_router

    router = load_router(router_file)
    inner = getattr(router, "router", router)
    featurizer = getattr(inner, "featurizer_", None)
    if featurizer is None or not getattr(inner, "uses_features", False):
        return None
    if hasattr(featurizer, "threads"):  # one ONNX Runtime thread: no idle worker spinning on the other core
        featurizer.threads = 1
    featurizer.transform(["warm up"])
    half = len(queries) // 2

    def cpu() -> float:
        t = os.times()
        return t.user + t.system

    started = cpu()
    for query in queries[:half]:
        featurizer.transform([query])
    alone = (cpu() - started) / half * 1000
    rest = queries[half:]
    started = cpu()
    for i in range(0, len(rest), batch):
        featurizer.transform(rest[i:i + batch])
    batched = (cpu() - started) / len(rest) * 1000
    return alone, batched


def _start(router_file: str, window_ms: float | None, max_batch: int) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, __file__, "--serve-only", router_file, "--port", str(port), "--window-ms",
            "none" if window_ms is None else str(window_ms), "--max-batch", str(max_batch)]
    server = subprocess.Popen(argv)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--router", default="knn")
    parser.add_argument("--featurizer", default="minilm", help="minilm (the default embedder) or tfidf")
    parser.add_argument("--requests", type=int, default=240, help="requests per cell (a third at concurrency 1)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--window-ms", default="2,0", help="batching windows to measure, comma-separated")
    parser.add_argument("--max-batch", type=int, default=8, help="most requests in one batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floor-queries", type=int, default=200,
                        help="new questions featurised in-process, alone and batched, for the CPU floor")
    parser.add_argument("--serve-only", metavar="ROUTER_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_only:
        window = None if args.window_ms == "none" else float(args.window_ms)
        serve(args.serve_only, args.port, window, args.max_batch)
        return 0
    from rag_routing.routers.registry import create_router

    levels = [int(c) for c in args.concurrency.split(",")]
    train, pool = _split(args.data, 600, args.seed)
    token = os.urandom(4).hex()  # new texts each run: the embedding cache on disk cannot answer
    pool = [f"[{token}-{i}] {q}" for i, q in enumerate(pool)]
    featurizer = None if args.featurizer == "minilm" else args.featurizer
    router = create_router(args.router, featurizer=featurizer).fit(train)
    folder = tempfile.mkdtemp(prefix="serve-bench-")
    router_file = str(router.save(Path(folder) / "router.npz"))
    print(f"rag-routing serve on loopback: router={args.router}, features={args.featurizer}, fitted on 600 MMLU "
          f"queries and loaded from disk; instant generators; every request a new MMLU question; one uvicorn "
          f"worker; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    print(f"{'mode':<26}{'conc.':>6}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'router p50':>12}{'CPU ms/req':>12}"
          f"{'RSS MB':>8}{'peak MB':>9}")
    next_query = 0
    results: dict[tuple[str, int], float] = {}
    windows = [float(w) for w in args.window_ms.split(",") if w.strip()]
    for label, window in [("alone (no batching)", None)] + [(f"batched ({w:g} ms window)", w) for w in windows]:
        server, url = _start(router_file, window, args.max_batch)
        try:
            asyncio.run(_load(url, pool[next_query:next_query + 16], 8))  # warm-up: connections, first batch
            next_query += 16
            for concurrency in levels:
                n = max(args.requests // 3, 30) if concurrency == 1 else args.requests
                queries = pool[next_query:next_query + n]
                next_query += n
                cpu = _cpu_seconds(server.pid)
                rps, latency, router_s = asyncio.run(_load(url, queries, concurrency))
                cpu_ms = (_cpu_seconds(server.pid) - cpu) / len(queries) * 1000
                rss, peak = _rss_mb(server.pid)
                results[(label, concurrency)] = rps
                print(f"{label:<26}{concurrency:>6}{rps:>8.1f}{_ms(latency, 0.5):>9.1f}{_ms(latency, 0.99):>9.1f}"
                      f"{_ms(router_s, 0.5):>12.1f}{cpu_ms:>12.1f}{rss:>8.0f}{peak:>9.0f}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    floor = featurisation_floor(router_file, pool[-2 * args.floor_queries:], args.max_batch)
    if floor is not None:
        cores = os.cpu_count() or 1
        print(f"featurisation alone, in this process ({args.floor_queries} new questions each): {floor[0]:.1f} ms CPU "
              f"per question one at a time, {floor[1]:.1f} in batches of {args.max_batch}: an unbatched server on "
              f"{cores} cores cannot pass {cores * 1000 / floor[0]:.0f} req/s, a batching one "
              f"{cores * 1000 / floor[1]:.0f}, before HTTP, auth, budgets and the ledger")
    base, batched = results, [k for k in results if k[0] != "alone (no batching)"]
    ratios = ", ".join(f"{c}: {results[(lbl, c)] / base[('alone (no batching)', c)]:.2f}x" for lbl, c in batched)
    print(f"batched / alone requests per second at each concurrency: {ratios}")
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
