"""How router fits scale: fit time, route time and peak memory against training rows and candidates.

Run: ``python benchmarks/scaling.py [--rows 1000 10000 100000] [--candidates 2 10 50]
[--routers knn,cluster,mf,sw_ranking,elo,tfidf_lr] [--timeout 300] [--route 10000]``.

Synthetic data (no shared files needed): ``n`` queries as 384-d unit vectors around 64 topic centroids, each
with a short text of topic words (for ``tfidf_lr``, which reads text); binary outcomes drawn from per-topic,
per-candidate accuracies; fixed per-candidate costs. Every (router, rows, candidates) cell runs in its own
child process (so its peak RSS is its own) and is killed after ``--timeout`` seconds (``>T`` in the table).
With ``--index-quality`` (routers ``knn,sw_ranking,elo``) it prints instead what the approximate neighbour
index these routers use from 20,000 rows costs against the exact one (:func:`index_cell`). Printed per cell
otherwise: fit seconds, seconds to route ``--route`` new queries (features precomputed; text for
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
    return synthetic_with_truth(n, m, seed)[0]


def synthetic_with_truth(n: int, m: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """:func:`synthetic` and each row's true accuracy per candidate (``(n, m)``, what its outcomes are drawn from)."""
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
    return ds.with_embeddings(X, "synthetic"), accuracy[topic]


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


def index_cell(router_name: str, n: int, m: int, n_test: int) -> dict[str, float]:
    """What the approximate (IVF) neighbour index costs: the router fitted with it (the default from 20,000 rows)
    and with the exact index (``ivf_threshold=None``) on ``n`` rows, both routing ``n_test`` held-out rows of the
    same synthetic distribution: fit and route seconds, the share of identical decisions, and the true accuracy
    and cost of what each picks (oracle: the most accurate candidate of each row's topic)."""
    from rag_routing.embeddings import PrecomputedFeaturizer
    from rag_routing.evaluation.benchmark import build_router
    from rag_routing.routers.support import GuardSettings

    data, truth = synthetic_with_truth(n + n_test, m, seed=0)
    train, test = data.subset(np.arange(n)), data.subset(np.arange(n, n + n_test))
    truth = truth[n:]
    out: dict[str, float] = {"oracle_accuracy": float(truth.max(axis=1).mean())}
    picks = {}
    for label, params in (("ivf", {}), ("exact", {"ivf_threshold": None})):
        router = build_router(router_name, PrecomputedFeaturizer("synthetic"), 0, params)
        router.guard_settings = GuardSettings.off()
        started = time.perf_counter()
        router.fit(train)
        out[f"{label}_fit_s"] = time.perf_counter() - started
        started = time.perf_counter()
        picks[label] = np.asarray(router.route_indices(test.embeddings))
        out[f"{label}_route_s"] = time.perf_counter() - started
        out[f"{label}_accuracy"] = float(truth[np.arange(n_test), picks[label]].mean())
        out[f"{label}_cost"] = float(test.cost[np.arange(n_test), picks[label]].mean())
        out[f"{label}_exact_index"] = float(router.index_.exact)
    out["same_decisions"] = float(np.mean(picks["ivf"] == picks["exact"]))
    return out


def child(args: argparse.Namespace) -> None:
    if args.index_quality:
        print(json.dumps(index_cell(args.cell_router, args.cell_rows, args.cell_candidates, args.route)))
        return
    print(json.dumps(run_cell(args.cell_router, args.cell_rows, args.cell_candidates, args.route, args.guards)))


def run_child(name: str, n: int, m: int, args: argparse.Namespace, extra: list[str]) -> dict[str, float] | None:
    """One cell in its own process (killed after ``--timeout``); ``None``, with a line saying why, if it did not
    finish."""
    cmd = [sys.executable, __file__, "--cell-router", name, "--cell-rows", str(n), "--cell-candidates", str(m),
           "--route", str(args.route), *extra]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"{name:11s} {m:5d} {n:8d} {'>' + format(args.timeout, '.0f'):>8s}", flush=True)
        return None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["?"])[-1][:90]
        print(f"{name:11s} {m:5d} {n:8d} failed: {reason}", flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def index_quality(args: argparse.Namespace) -> None:
    """``--index-quality``: :func:`index_cell` for each memory router, row count and candidate count."""
    print(f"approximate (IVF) vs exact neighbour index: {args.route} held-out queries of the same distribution, "
          f"guards off, the routers' default lambda; accuracy = true accuracy of the picked candidate")
    print(f"{'router':11s} {'cands':>5s} {'rows':>8s} {'fit s ivf/exact':>16s} {'route s ivf/exact':>18s} "
          f"{'same':>6s} {'acc ivf/exact/oracle':>21s} {'cost ivf/exact':>16s}")
    for name in args.routers.split(","):
        for m in args.candidates:
            for n in args.rows:
                r = run_child(name, n, m, args, ["--index-quality"])
                if r is None:
                    break
                note = "" if not r["ivf_exact_index"] else "  (below the IVF threshold: both exact)"
                print(f"{name:11s} {m:5d} {n:8d} {r['ivf_fit_s']:7.2f}/{r['exact_fit_s']:<8.2f} "
                      f"{r['ivf_route_s']:8.2f}/{r['exact_route_s']:<9.2f} {r['same_decisions']:6.1%} "
                      f"{r['ivf_accuracy']:.4f}/{r['exact_accuracy']:.4f}/{r['oracle_accuracy']:.4f} "
                      f"{r['ivf_cost']:.5f}/{r['exact_cost']:.5f}{note}", flush=True)


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
    parser.add_argument("--index-quality", action="store_true",
                        help="instead of timing: what the approximate neighbour index costs knn / sw_ranking / elo "
                             "in decisions and true accuracy against the exact index (--route held-out queries)")
    parser.add_argument("--cell-router", help=argparse.SUPPRESS)
    parser.add_argument("--cell-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cell-candidates", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell_router:
        child(args)
        return
    if args.index_quality:
        index_quality(args)
        return
    print(f"cpus={os.cpu_count()} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; guards {args.guards}; "
          f"route = {args.route} new queries; peak RSS includes the synthetic data (data_mb)")
    print(f"{'router':11s} {'cands':>5s} {'rows':>8s} {'fit s':>8s} {'route s':>8s} {'peak MB':>8s} {'data MB':>8s}")
    for name in args.routers.split(","):
        for m in args.candidates:
            fits: dict[int, float] = {}
            for n in args.rows:
                r = run_child(name, n, m, args, ["--guards", args.guards])
                if r is None:
                    break
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
