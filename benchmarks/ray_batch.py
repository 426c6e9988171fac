"""Ray vs one process on a synthetic query log: featurising 100,000 queries and labelling routing data.

Run: ``python benchmarks/ray_batch.py [--queries 100000] [--workers 2] [--minilm 4000] [--label-cells 400]
[--latency-ms 50] [--chunk 4] [--task-cpus 0.1] [--bench-queries 100000] [--bench-routers knn,mf,cluster]
[--only-bench]``

* featurise: a TF-IDF-LSA featurizer fitted on 10,000 queries transforms the whole log, once with
  ``featurizer.transform`` in this process and once with :func:`rag_routing.ray_jobs.featurize_on_ray`
  (``--workers`` actors); the rows must be identical.
* featurise with MiniLM (``--minilm`` queries, the torch path, cache off): the CPU-bound case.
* label: a :class:`RoutingDataBuilder` labels ``--label-cells`` cells with two candidates that answer after
  ``--latency-ms`` (a remote API's round trip, simulated with a sleep: the candidate itself costs no CPU), once
  in this process and once with :class:`~rag_routing.ray_jobs.RayCellExecutor` (one task per chunk of cells);
  the tables must be identical.

* bench: ``rag-routing bench``'s runner on a ``--bench-queries`` routing log (built from the same synthetic
  queries, 4 candidates, TF-IDF features, routers ``--bench-routers``), once with
  :func:`~rag_routing.evaluation.benchmark.run_benchmark` and once with
  :func:`rag_routing.ray_jobs.run_benchmark_on_ray` (one Ray task per router); the reports must be identical
  except for their timings. ``--bench-queries 0`` skips it; ``--only-bench`` runs only it.

Each row prints items per second and the ratio Ray / one process. Ray's start-up (10-20 s here) is printed
apart and not counted. On this 2-core machine a CPU-bound job can gain at most ~2x; labelling waits on the
provider, so it scales with the number of tasks in flight.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.embeddings import TfidfFeaturizer  # noqa: E402
from rag_routing.evaluation.answer_scorers import TokenF1Scorer  # noqa: E402
from rag_routing.evaluation.labeling import RoutingDataBuilder  # noqa: E402
from rag_routing.ledger import ledger_scope  # noqa: E402

TOPICS = ["refund", "invoice", "password", "shipping", "integral", "theorem", "poem", "python", "visa", "recipe"]


def synthetic_log(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct support / knowledge queries of varied length."""
    rng = np.random.default_rng(seed)
    words = rng.choice(TOPICS, size=(n, 6))
    return [f"query {i}: how do I {' '.join(row[: 2 + i % 5])} for case {rng.integers(1_000_000)}?"
            for i, row in enumerate(words)]


class SlowModel:
    """A candidate that answers after a fixed latency (sleeping, not computing), like a remote API."""

    def __init__(self, latency: float, answer: str):
        self.latency, self.answer = latency, answer

    def __call__(self, prompt: str) -> str:
        time.sleep(self.latency)
        return self.answer


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--label-cells", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--chunk", type=int, default=4, help="cells per Ray labelling task")
    parser.add_argument("--batch", type=int, default=400, help="cells per labelling batch (the builder saves after each)")
    parser.add_argument("--task-cpus", type=float, default=0.1, help="CPUs reserved per labelling task (waits)")
    parser.add_argument("--minilm", type=int, default=4000, help="queries featurised with MiniLM too (0 = skip)")
    parser.add_argument("--bench-queries", type=int, default=100_000, help="routing-log rows for bench (0 = skip)")
    parser.add_argument("--bench-routers", default="knn,mf,cluster", help="routers benchmarked (comma-separated)")
    parser.add_argument("--only-bench", action="store_true", help="run only the bench comparison")
    args = parser.parse_args(argv)
    from rag_routing import ray_jobs

    if args.only_bench:
        _, started = timed(lambda: ray_jobs.connect(num_cpus=args.workers))
        print(f"Ray start-up: {started:.1f} s (not counted below)")
        bench(args, ray_jobs)
        return 0
    log = synthetic_log(args.queries)
    tfidf = TfidfFeaturizer(n_components=64).fit(log[:10_000])
    _, started = timed(lambda: ray_jobs.connect(num_cpus=args.workers))
    print(f"Ray start-up: {started:.1f} s (not counted below)")

    here, t_here = timed(lambda: tfidf.transform(log))
    there, t_there = timed(lambda: ray_jobs.featurize_on_ray(log, tfidf, n_workers=args.workers,
                                                             chunk_size=max(1, args.queries // (4 * args.workers))))
    assert np.array_equal(here, there), "Ray features differ from one process's"
    print(f"featurise {args.queries:,} queries (TF-IDF-LSA-64): one process {args.queries / t_here:,.0f}/s, "
          f"Ray x{args.workers} {args.queries / t_there:,.0f}/s, ratio {t_here / t_there:.2f}x (rows identical)")

    if args.minilm:
        from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, SentenceTransformerEmbedder

        minilm = SentenceTransformerEmbedder(DEFAULT_EMBEDDING_MODEL, cache=None)  # the model, not the disk cache
        sample = log[: args.minilm]
        minilm.transform(sample[:64])  # load the model before timing
        dense, t_dense = timed(lambda: minilm.transform(sample))
        dense_ray, t_dense_ray = timed(lambda: ray_jobs.featurize_on_ray(sample, minilm, n_workers=args.workers,
                                                                         chunk_size=512))
        cosine = float(np.mean(np.sum(dense * dense_ray, axis=1)))
        print(f"featurise {args.minilm:,} queries (MiniLM, torch): one process {args.minilm / t_dense:,.0f}/s, "
              f"Ray x{args.workers} {args.minilm / t_dense_ray:,.0f}/s, ratio {t_dense / t_dense_ray:.2f}x "
              f"(mean cosine {cosine:.6f}; each worker loads the model once, included)")

    n_rows = max(1, args.label_cells // 2)
    queries, refs = log[:n_rows], [["case"]] * n_rows
    free = Pricing(input_per_mtok=0.0, output_per_mtok=0.0)

    def build(executor=None) -> RoutingDataBuilder:  # type: ignore[no-untyped-def]
        models = {"small": SlowModel(args.latency_ms / 1000, "for case"), "large": SlowModel(args.latency_ms / 1000,
                                                                                            "case")}
        return RoutingDataBuilder(queries, models, TokenF1Scorer(), references=refs,
                                  pricing={"small": free, "large": free}, executor=executor)

    one, local = build(), None
    with ledger_scope():
        local, t_local = timed(lambda: one.run(batch_size=args.batch))
    in_flight = max(1, int(args.workers / args.task_cpus))
    executor = ray_jobs.RayCellExecutor(chunk_size=args.chunk, workers=in_flight, task_cpus=args.task_cpus)
    ray_builder = build(executor)
    _, t_warm = timed(lambda: executor.start(ray_builder))  # the worker processes start here, not timed below
    print(f"Ray labelling workers started in {t_warm:.1f} s (not counted)")
    with ledger_scope():
        remote, t_remote = timed(lambda: ray_builder.run(batch_size=args.batch))
    assert np.array_equal(one.dataset.quality, ray_builder.dataset.quality), "Ray labels differ"
    cells = local.labelled
    print(f"label {cells} cells ({args.latency_ms:g} ms per call): one process {cells / t_local:,.1f}/s, "
          f"Ray ({in_flight} workers of {args.task_cpus:g} CPU, {args.chunk} cells a task) {cells / t_remote:,.1f}/s, "
          f"ratio {t_local / t_remote:.2f}x "
          f"(tables identical)")
    if args.bench_queries:
        bench(args, ray_jobs)
    return 0


def routing_log(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A synthetic routing data set on :func:`synthetic_log`'s queries: 4 candidates at 4 prices, each better on
    some topics (so routers have a signal to learn)."""
    from rag_routing.evaluation.dataset import RoutingDataset

    rng = np.random.default_rng(seed)
    queries = synthetic_log(n, seed)
    topic = np.array([sum(TOPICS.index(w) for w in q.split() if w in TOPICS) % 4 for q in queries])
    skill = np.array([[0.8, 0.4, 0.5, 0.9], [0.3, 0.8, 0.6, 0.9], [0.5, 0.5, 0.8, 0.9], [0.2, 0.6, 0.7, 0.9]])
    quality = (rng.random((n, 4)) < skill[topic]).astype(float)
    cost = np.tile([0.0002, 0.001, 0.004, 0.02], (n, 1)) * rng.uniform(0.5, 1.5, (n, 1))
    return RoutingDataset(queries, ["tiny", "small", "medium", "large"], quality, cost, name="synthetic-log")


def _untimed(report):  # type: ignore[no-untyped-def]
    from rag_routing.evaluation.report import _finite

    out = _finite(report.to_dict())  # NaN as None, as the JSON writes it (NaN != NaN)
    out["seconds"] = None
    out["results"] = [dict(r, fit_seconds=None, eval_seconds=None) for r in out["results"]]
    return out


def bench(args: argparse.Namespace, ray_jobs) -> None:  # type: ignore[no-untyped-def]
    """``rag-routing bench``'s runner, one process vs one Ray task per router, on the same split and seed."""
    from rag_routing.evaluation.benchmark import run_benchmark

    train, test = routing_log(args.bench_queries).train_test_split(0.5, seed=0)
    routers = [r for r in args.bench_routers.split(",") if r]
    options = {"embedder": "tfidf", "seed": 0, "n_lambdas": 200, "progress": False}
    here, t_here = timed(lambda: run_benchmark(train, test, routers, **options))
    there, t_there = timed(lambda: ray_jobs.run_benchmark_on_ray(train, test, routers, **options))
    a, b = _untimed(here), _untimed(there)
    differ = [f"{x['router']}.{k}" for x, y in zip(a["results"], b["results"]) for k in x if x[k] != y[k]]
    differ += [k for k in a if k != "results" and a[k] != b[k]]
    assert not differ, f"the Ray report differs from one process's in {differ}"
    n = args.bench_queries
    rows = len(here.results) - len(here.candidates)
    print(f"bench {n:,} queries ({len(train):,} train / {len(test):,} test, {len(here.candidates)} candidates, "
          f"{rows} routers incl. baselines, TF-IDF features, 200 λ): one process {t_here:.1f} s "
          f"({n / t_here:,.0f} queries/s), Ray ({args.workers} CPUs, a task per router) {t_there:.1f} s "
          f"({n / t_there:,.0f} queries/s), ratio {t_here / t_there:.2f}x (reports identical but timings); "
          f"featurising {here.seconds.get('featurize', 0):.1f} s of it runs on the driver either way")


if __name__ == "__main__":
    sys.exit(main())
