"""How router fits scale: fit time, route time and peak memory against training rows and candidates.

Run: ``python benchmarks/scaling.py [--rows 1000 10000 100000] [--candidates 2 10 50]
[--routers knn,cluster,mf,sw_ranking,elo,tfidf_lr] [--timeout 300] [--route 10000]``.

Synthetic data (no shared files needed): ``n`` queries as 384-d unit vectors around 64 topic centroids, each
with a short text of topic words (for ``tfidf_lr``, which reads text); binary outcomes drawn from per-topic,
per-candidate accuracies; fixed per-candidate costs. Every (router, rows, candidates) cell runs in its own
child process (so its peak RSS is its own) and is killed after ``--timeout`` seconds (``>T`` in the table).
Printed per cell: fit seconds, seconds to route ``--route`` new queries (features precomputed; text for
``tfidf_lr``), and the child's peak RSS in MB. The growth exponent is the slope of log fit time against log rows
between the two largest row counts that finished (1 = linear). The machine is shared: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

DIM = 384
TOPICS = 64


def synthetic(n: int, m: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A RoutingDataset of ``n`` rows and ``m`` candidates with 384-d embeddings attached."""
    from rag_routing.evaluation.dataset import RoutingDataset

    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(TOPICS, DIM)).astype(np.float32)
    topic = rng.integers(0, TOPICS, n)
    X = centroids[topic] + 1.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    accuracy = rng.uniform(0.2, 0.95, size=(TOPICS, m))
    quality = (rng.random((n, m)) < accuracy[topic]).astype(np.float64)
    cost = np.tile(np.linspace(1e-4, 1e-2, m), (n, 1))
    words = rng.integers(0, 40, (n, 6))
    queries = [f"topic{t} " + " ".join(f"w{t}x{w}" for w in row) + f" q{i}" for i, (t, row) in
               enumerate(zip(topic, words))]
    ds = RoutingDataset(queries, [f"model{j}" for j in range(m)], quality, cost, name="synthetic")
    return ds.with_embeddings(X, "synthetic")


def run_cell(router_name: str, n: int, m: int, n_route: int, guards: str = "on") -> dict[str, float]:
    """Fit and route once in this process; returns seconds and peak RSS (MB)."""
    import resource

    from rag_routing.embeddings import PrecomputedFeaturizer
    from rag_routing.evaluation.benchmark import build_router

    import faiss  # noqa: F401  - heavy imports happen before the clock starts (2-20 s on a busy machine)
    import scipy.sparse  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    train = synthetic(n, m, seed=0)
    test = synthetic(n_route, m, seed=1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    router = build_router(router_name, PrecomputedFeaturizer("synthetic"), 0)
    if guards == "off":
        try:
            from rag_routing.routers.support import GuardSettings
        except ImportError:  # an older rag_routing (PYTHONPATH=old checkout, to time the old path): no guards
            pass
        else:
            router.guard_settings = GuardSettings.off()
    started = time.perf_counter()
    router.fit(train)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    router.route_indices(test if not router.uses_features else test.embeddings)
    route_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fit_s": fit_s, "route_s": route_s, "peak_mb": peak, "data_mb": rss_before}


def child(args: argparse.Namespace) -> None:
    print(json.dumps(run_cell(args.cell_router, args.cell_rows, args.cell_candidates, args.route, args.guards)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--candidates", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--routers", default="knn,cluster,mf,sw_ranking,elo,tfidf_lr")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--route", type=int, default=10_000)
    parser.add_argument("--guards", choices=("on", "off"), default="on",
                        help="the shared support guard (fit on up to 7,000 rows, a distance scan per route); "
                             "'off' times the router alone")
    parser.add_argument("--cell-router", help=argparse.SUPPRESS)
    parser.add_argument("--cell-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cell-candidates", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell_router:
        child(args)
        return
    print(f"cpus={os.cpu_count()} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; guards {args.guards}; "
          f"route = {args.route} new queries; peak RSS includes the synthetic data (data_mb)")
    print(f"{'router':11s} {'cands':>5s} {'rows':>8s} {'fit s':>8s} {'route s':>8s} {'peak MB':>8s} {'data MB':>8s}")
    for name in args.routers.split(","):
        for m in args.candidates:
            fits: dict[int, float] = {}
            for n in args.rows:
                cmd = [sys.executable, __file__, "--cell-router", name, "--cell-rows", str(n),
                       "--cell-candidates", str(m), "--route", str(args.route), "--guards", args.guards]
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    print(f"{name:11s} {m:5d} {n:8d} {'>' + format(args.timeout, '.0f'):>8s}", flush=True)
                    break
                if done.returncode != 0:
                    reason = (done.stderr.strip().splitlines() or ["?"])[-1][:90]
                    print(f"{name:11s} {m:5d} {n:8d} failed: {reason}", flush=True)
                    break
                r = json.loads(done.stdout.strip().splitlines()[-1])
                fits[n] = r["fit_s"]
                print(f"{name:11s} {m:5d} {n:8d} {r['fit_s']:8.2f} {r['route_s']:8.2f} {r['peak_mb']:8.0f} "
                      f"{r['data_mb']:8.0f}", flush=True)
            done_rows = sorted(fits)
            if len(done_rows) >= 2:
                a, b = done_rows[-2], done_rows[-1]
                slope = math.log(max(fits[b], 1e-3) / max(fits[a], 1e-3)) / math.log(b / a)
                print(f"{name:11s} {m:5d} growth exponent of fit time ({a}->{b} rows): {slope:.2f}", flush=True)


if __name__ == "__main__":
    main()
