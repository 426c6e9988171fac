"""GraphRouter (Feng et al. 2025) on the shared data: quality, training time, and a candidate added from its
description alone.

Run: ``python benchmarks/graph_router.py [--data ../shared/data] [--only routerbench|held-out|loco|routerdc7]
[--held-out gpt-4-1106-preview,claude-v2] [--embedder minilm|tfidf]``.

* **routerbench**: RouterBench ARC-Challenge + Winogrande, train -> test (1,926 / 825 queries, 11 models, real
  US $ per query), the split ``benchmarks/representation_routers.py`` uses for ``encoder`` and ``contrastive``:
  AIQ, max quality and fit seconds of ``graph`` beside ``mf``, ``knn``, ``cluster`` and the baselines.
* **held-out**: GraphRouter trained without one model, which is then added without retraining with
  ``add_candidate(name, cost=...)`` from its shipped one-line description and its mean US $ per call on the
  training prompts (what its price implies), first with no outcome of it at all, then also with its outcomes on
  2 / 5 / 10 % of the training queries (k-means anchors, :func:`rag_routing.pool.select_anchor_queries`),
  against the router refitted with it: AIQ, share of test queries routed to it at λ = 0, and its predicted vs
  actual mean test quality.
* **loco**: the same for every model in turn (leave one candidate out, 5 % anchors): how far the estimate of a
  model's mean quality is from the truth, against the no-information guess "the mean of the other models".
* **routerdc7**: RouterDC's seven 7-8B models, in distribution (train -> test per task): test quality at
  λ = 0 (all seven cost the same per token) beside the best single model and the oracle.

Torch runs on one thread; MiniLM vectors come from the embedding cache (``~/.cache/rag_routing``) when present.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.evaluation.benchmark import featurize, load_split, run_benchmark  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.scorecard import Reference, evaluate_router  # noqa: E402
from rag_routing.pool import select_anchor_queries  # noqa: E402
from rag_routing.routers.base import load_router  # noqa: E402
from rag_routing.routers.graph import GraphRouter  # noqa: E402

ROUTERDC_TASKS = ("mmlu", "cmmlu", "arc_challenge", "arc_easy", "humaneval")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def routerbench_split(root: Path) -> tuple[RoutingDataset, RoutingDataset]:
    folder = root / "routerbench"
    parts = [load_split(train=folder / f"{t}_train.csv", test=folder / f"{t}_test.csv")
             for t in ("arc_challenge", "winograde")]
    return (parts[0][0].concat(parts[1][0], name="routerbench:arc+winogrande"),
            parts[0][1].concat(parts[1][1], name="routerbench:arc+winogrande"))


def routerbench(train: RoutingDataset, test: RoutingDataset, embedder: str) -> None:
    start = time.perf_counter()
    report = run_benchmark(train, test, ["graph", "mf", "knn", "cluster"], embedder=embedder, progress=False)
    print(f"\n== RouterBench ARC-Challenge + Winogrande, train -> test ({len(train)} / {len(test)}; {embedder}; "
          f"{time.perf_counter() - start:.0f} s in all)")
    print(report.table())


def _timed_fit(router: GraphRouter, data: RoutingDataset) -> tuple[GraphRouter, float]:
    start = time.perf_counter()
    router.fit(data)
    return router, time.perf_counter() - start


def _aiq(router: GraphRouter, test: RoutingDataset, ref: Reference) -> float:
    return evaluate_router(router, test.select_candidates(router.candidates_), ref).aiq


def _added(path: Path, name: str, train: RoutingDataset, anchors: np.ndarray | None) -> GraphRouter:
    """The router saved at ``path`` (trained without ``name``) with ``name`` added from its description and its
    mean US $ per call on the training prompts, plus its outcomes on the ``anchors`` rows when given."""
    router = load_router(path)
    j = train.candidate_index(name)
    cost = float(np.nanmean(train.cost[:, j]))
    if anchors is None:
        return router.add_candidate(name, cost=cost)
    return router.add_candidate(name, train.quality[anchors, j], train.subset(anchors), cost=cost)


def held_out(train: RoutingDataset, test: RoutingDataset, featurizer: object, names: list[str],
             fractions: tuple[float, ...], leave_one_out: bool, workdir: Path) -> None:
    ref = Reference.from_test(test)
    full, full_s = _timed_fit(GraphRouter(featurizer=featurizer), train)
    S_full, chosen_full = full.predict_quality(test), full.route_indices(test, lam=0.0)
    print(f"\n== A model added without retraining (GraphRouter, {featurizer.name}): from its description alone, "
          f"then with its outcomes on k-means anchor queries; refit on all {train.n_candidates}: "
          f"AIQ {_aiq(full, test, ref):.4f}, fit {full_s:.0f} s")
    print(f"  {'held-out model':<36} {'added from':<24} {'AIQ':>7} {'share λ=0':>9} {'pred. q':>7} {'actual':>7}")
    errors: dict[str, list[float]] = {}
    for name in names:
        j = train.candidate_index(name)
        others = [c for c in train.candidates if c != name]
        small, fit_s = _timed_fit(GraphRouter(featurizer=featurizer), train.select_candidates(others))
        path = small.save(workdir / "without.npz")
        actual = float(np.nanmean(test.quality[:, j]))
        prior = float(np.nanmean(np.nanmean(train.quality[:, [train.candidate_index(c) for c in others]], axis=0)))
        print(f"  {name:<36} {f'(not added; fit {fit_s:.0f} s)':<24} {_aiq(small, test, ref):>7.4f} {'':>9} "
              f"{prior:>7.3f} {actual:>7.3f}")
        settings = [("description only", "description only", None)] + [
            (f"+ {int(f * len(train))} anchors ({100 * f:.0f} %)", f"+ {100 * f:.0f} % anchors",
             select_anchor_queries(train, int(f * len(train)), "cluster", candidates=others, seed=0))
            for f in fractions]
        for label, key, anchors in settings:
            router = _added(path, name, train, anchors)
            predicted = float(router.predict_quality(test)[:, -1].mean())
            share = float((router.route_indices(test, lam=0.0) == len(others)).mean())
            errors.setdefault(key, []).append(abs(predicted - actual))
            print(f"  {'':<36} {label:<24} {_aiq(router, test, ref):>7.4f} {share:>9.3f} {predicted:>7.3f}",
                  flush=True)
        errors.setdefault("the other models' mean (no information)", []).append(abs(prior - actual))
        print(f"  {'':<36} {'refit on all':<24} {_aiq(full, test, ref):>7.4f} {float((chosen_full == j).mean()):>9.3f} "
              f"{float(S_full[:, j].mean()):>7.3f}", flush=True)
    print("  (the 'not added' row's 'pred. q' column is the other models' mean training quality: a guess with no "
          "information)")
    if leave_one_out:
        print(f"  mean |predicted - actual| mean test quality over the {len(names)} models held out in turn: "
              + "; ".join(f"{k} {np.mean(v):.3f}" for k, v in errors.items()))


def routerdc7(root: Path, embedder: str) -> None:
    print(f"\n== RouterDC7 in distribution (train -> test per task), GraphRouter ({embedder}): test quality at λ = 0")
    print(f"  {'task':<14} {'n train/test':>13} {'graph':>7} {'best single':>12} {'oracle':>7} {'fit s':>6}")
    for task in ROUTERDC_TASKS:
        train, test = load_split(train=root / "routerdc7" / f"{task}_train.json",
                                 test=root / "routerdc7" / f"{task}_test.json")
        train, test, featurizer = featurize(train, test, embedder, progress=False)
        router, fit_s = _timed_fit(GraphRouter(featurizer=featurizer), train)
        chosen = router.route_indices(test, lam=0.0)
        q = np.nan_to_num(test.quality)
        print(f"  {task:<14} {len(train):>6}/{len(test):<6} {q[np.arange(len(test)), chosen].mean():>7.4f} "
              f"{q.mean(axis=0).max():>12.4f} {q.max(axis=1).mean():>7.4f} {fit_s:>6.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--only", choices=("routerbench", "held-out", "loco", "routerdc7"), action="append",
                        help="sections (repeatable); default routerbench, held-out and routerdc7")
    parser.add_argument("--held-out", default="gpt-4-1106-preview,claude-v2", help="models of --only held-out")
    args = parser.parse_args(argv)
    _one_thread()
    sections = args.only or ["routerbench", "held-out", "routerdc7"]
    start = time.perf_counter()
    train, test = routerbench_split(args.data)
    if "routerbench" in sections:
        routerbench(train, test, args.embedder)
    if "held-out" in sections or "loco" in sections:
        ftrain, ftest, featurizer = featurize(train, test, args.embedder, progress=False)
        with tempfile.TemporaryDirectory() as workdir:
            if "held-out" in sections:
                held_out(ftrain, ftest, featurizer, [n for n in args.held_out.split(",") if n], (0.02, 0.05, 0.10),
                         False, Path(workdir))
            if "loco" in sections:
                held_out(ftrain, ftest, featurizer, list(train.candidates), (0.05,), True, Path(workdir))
    if "routerdc7" in sections:
        routerdc7(args.data, args.embedder)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
