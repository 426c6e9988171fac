"""Active labelling on RouterBench: how many labels does each router need to come within 0.01 AIQ of itself
fitted on every label?

Run: ``python benchmarks/active_labeling.py [--data ../shared/data] [--seeds 3] [--routers mf,knn,cluster,regressor]
[--featurizer minilm|tfidf] [--quick] [--json OUT.json]``.

Setup (printed with the tables):

* RouterBench ARC-Challenge + Winogrande, train -> test (1,926 / 825 queries, 11 models). The training file's
  outcomes are the label oracle: "labelling" a (query, model) cell reveals its 0/1 score and its US $ from the
  file (cells empty in the file are never offered). Nothing else of the training table is visible.
* Every strategy starts from the same random 1 % of the cells (per seed) and grows in batches of 100 (5 % of
  the labels so far once that is larger) chosen by ``random``, ``uncertainty`` (posterior standard deviation),
  ``decision_value`` (expected value of information for ``argmax S - λC`` over a λ grid) or
  ``decision_value/$`` (the same per US $ of the label), all with the default
  :class:`~rag_routing.evaluation.quality_posterior.NeighbourPosterior` over the same features.
* At each checkpoint (1, 2, 4, 6, 10, 15, 25, 40, 60 % of the cells) each router is fitted on the labelled
  cells only (NaN elsewhere, costs known only where labelled) and its test AIQ computed as ``rag-routing
  bench`` does (:func:`~rag_routing.evaluation.scorecard.evaluate_router`, 200 λ values).
* "Labels needed": the smallest checkpoint from which on every later checkpoint the router's AIQ is at least
  its fully labelled AIQ - 0.01 (at 100 % it is that router itself); the $ column is what those labels cost
  (sum of the file's per-call costs of the labelled cells; labelling everything costs the last line's $).
* Features: MiniLM vectors from the embedding cache (nothing is embedded), or TF-IDF-LSA (``--featurizer tfidf``).

A last table says which routers accept a partly labelled table (fitted on 5 % of the cells, random).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pool import load  # noqa: E402  (RouterBench train/test with cached MiniLM vectors)

from rag_routing.evaluation.active_sampling import (  # noqa: E402
    ActiveSampler,
    DecisionValueSampler,
    RandomSampler,
    UncertaintySampler,
)
from rag_routing.evaluation.benchmark import build_router, resolve_routers  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.scorecard import Reference, evaluate_router  # noqa: E402

CHECKPOINTS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.15, 0.25, 0.40, 0.60)
QUICK_CHECKPOINTS = (0.02, 0.04, 0.06, 0.10, 0.25, 0.60)
TOLERANCE = 0.01
STRATEGIES = {
    "random": lambda seed: RandomSampler(seed=seed),
    "uncertainty": lambda seed: UncertaintySampler(seed=seed),
    "decision_value": lambda seed: DecisionValueSampler(seed=seed),
    "decision_value/$": lambda seed: DecisionValueSampler(seed=seed, cost_power=1.0),
}


def fit_aiq(name: str, train: RoutingDataset, test: RoutingDataset, ref: Reference, featurizer: Any) -> float:
    router = build_router(name, featurizer, 0).fit(train)
    return evaluate_router(router, test, ref).aiq


def labelled_view(oracle: RoutingDataset, mask: np.ndarray) -> RoutingDataset:
    """The training table as a labeller sees it: outcomes and costs only where ``mask`` is True."""
    return replace(oracle, quality=np.where(mask, oracle.quality, np.nan), cost=np.where(mask, oracle.cost, np.nan))


def grow(oracle: RoutingDataset, mask: np.ndarray, target: int, sampler: ActiveSampler,
         offered: np.ndarray) -> float:
    """Label cells chosen by ``sampler`` until ``target`` are labelled; returns the seconds spent choosing."""
    seconds = 0.0
    while mask.sum() < target:
        have = int(mask.sum())
        batch = min(max(100, have // 20), target - have)
        started = time.perf_counter()
        cells = sampler.next_batch(labelled_view(oracle, mask), batch, exclude=~offered)
        seconds += time.perf_counter() - started
        if not cells:
            break
        rows, cols = np.array(cells).T
        mask[rows, cols] = True
    return seconds


def run_strategy(name: str, seed: int, oracle: RoutingDataset, test: RoutingDataset, ref: Reference,
                 featurizer: Any, routers: list[str], checkpoints: tuple[float, ...]) -> dict[str, Any]:
    offered = ~np.isnan(oracle.quality)
    total = int(offered.sum())
    rng = np.random.default_rng(seed)
    mask = np.zeros(offered.shape, dtype=bool)
    start_cells = rng.choice(np.flatnonzero(offered.ravel()), size=int(checkpoints[0] * total), replace=False)
    mask.ravel()[start_cells] = True
    sampler = STRATEGIES[name](seed)
    out: dict[str, Any] = {"labels": [], "usd": [], "aiq": {r: [] for r in routers}, "choose_s": 0.0, "fit_s": 0.0}
    for fraction in checkpoints:
        out["choose_s"] += grow(oracle, mask, int(fraction * total), sampler, offered)
        view = labelled_view(oracle, mask)
        out["labels"].append(int(mask.sum()))
        out["usd"].append(float(np.nansum(view.cost)))
        started = time.perf_counter()
        for router in routers:
            out["aiq"][router].append(fit_aiq(router, view, test, ref, featurizer))
        out["fit_s"] += time.perf_counter() - started
    return out


def labels_needed(aiqs: list[float], full: float) -> int | None:
    """Index of the first checkpoint from which every later one is within tolerance (None: only at 100 %)."""
    ok = np.asarray(aiqs) >= full - TOLERANCE
    for k in range(len(ok)):
        if ok[k:].all():
            return k
    return None


def report(results: dict[str, list[dict[str, Any]]], full: dict[str, float], total: int, total_usd: float) -> None:
    print(f"\n== Labels needed to stay within {TOLERANCE} AIQ of the fully labelled router "
          f"(mean over {len(next(iter(results.values())))} seeds; % of the {total:,} cells; $ = cost of those labels)")
    strategies = list(results)
    print(f"  {'router':<10} {'full AIQ':>8}  " + "  ".join(f"{s:>24}" for s in strategies))
    for router, full_aiq in full.items():
        cells = []
        for strategy in strategies:
            labels, usd = [], []
            for run in results[strategy]:
                k = labels_needed(run["aiq"][router], full_aiq)
                labels.append(total if k is None else run["labels"][k])
                usd.append(total_usd if k is None else run["usd"][k])
            cells.append(f"{np.mean(labels):>7,.0f} ({100 * np.mean(labels) / total:4.1f} %) ${np.mean(usd):6.3f}")
        print(f"  {router:<10} {full_aiq:>8.4f}  " + "  ".join(f"{c:>24}" for c in cells))
    print(f"  (labelling every cell: {total:,} labels, ${total_usd:.3f})")
    print("\n== Test AIQ minus the fully labelled AIQ at each checkpoint (mean over seeds)")
    first = next(iter(results.values()))[0]
    print(f"  {'router':<10} {'strategy':<17} " + " ".join(f"{n:>7,}" for n in first["labels"]))
    for router in full:
        for strategy in strategies:
            gaps = np.mean([np.asarray(run["aiq"][router]) - full[router] for run in results[strategy]], axis=0)
            print(f"  {router:<10} {strategy:<17} " + " ".join(f"{g:>+7.4f}" for g in gaps))


def partial_label_check(oracle: RoutingDataset, test: RoutingDataset, ref: Reference, featurizer: Any) -> None:
    """Which routers fit on a table with 5 % of the cells labelled (random), and what AIQ they reach."""
    rng = np.random.default_rng(0)
    offered = ~np.isnan(oracle.quality)
    mask = np.zeros(offered.shape, dtype=bool)
    mask.ravel()[rng.choice(np.flatnonzero(offered.ravel()), int(0.05 * offered.sum()), replace=False)] = True
    view = labelled_view(oracle, mask)
    print("\n== Routers on a partly labelled table (5 % of the cells, random; NaN elsewhere); "
          "encoder and contrastive (fine-tuned) not run")
    for name in resolve_routers(["all"]):
        if name == "oracle":  # reads the test outcomes, not the training table
            continue
        try:
            full = fit_aiq(str(name), oracle, test, ref, featurizer)
        except Exception as exc:  # report, do not hide: this is the point of the table
            print(f"  {name:<15} not run: fails fully labelled too here ({type(exc).__name__}: {str(exc)[:70]})")
            continue
        try:
            aiq = fit_aiq(str(name), view, test, ref, featurizer)
        except Exception as exc:
            print(f"  {name:<15} refuses partial labels: {type(exc).__name__}: {str(exc)[:90]}")
            continue
        same = " (the same: it learns no per-query signal from the table)" if round(aiq, 4) == round(full, 4) else ""
        print(f"  {name:<15} fits: AIQ {aiq:.4f}, fully labelled {full:.4f}{same}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--featurizer", choices=("minilm", "tfidf"), default="minilm")
    parser.add_argument("--routers", default="mf,knn,cluster,regressor")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--quick", action="store_true", help="one seed, fewer checkpoints, no partial-label table")
    parser.add_argument("--json", type=Path, help="write every checkpoint's AIQ as JSON")
    args = parser.parse_args(argv)
    if not (args.data / "routerbench").is_dir():
        print(f"error: no RouterBench data under {args.data}; pass --data", file=sys.stderr)
        raise SystemExit(2)
    warnings.filterwarnings("ignore", category=UserWarning)  # k-means on duplicate MiniLM vectors
    started = time.perf_counter()
    oracle, test, featurizer = load(args.data, args.featurizer)
    ref = Reference.from_test(test)
    routers = [r.strip() for r in args.routers.split(",") if r.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    checkpoints = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    seeds = 1 if args.quick else args.seeds
    offered = ~np.isnan(oracle.quality)
    total, total_usd = int(offered.sum()), float(np.nansum(np.where(offered, oracle.cost, np.nan)))
    print(f"RouterBench ARC-Challenge + Winogrande: {len(oracle)} train / {len(test)} test queries, "
          f"{oracle.n_candidates} models, {total:,} labelable cells; {featurizer.name} features; "
          f"{seeds} seed(s); strategies {', '.join(strategies)}")
    t = time.perf_counter()
    full = {r: fit_aiq(r, oracle, test, ref, featurizer) for r in routers}
    print(f"fully labelled AIQ: " + ", ".join(f"{r} {a:.4f}" for r, a in full.items())
          + f" ({time.perf_counter() - t:.1f} s)")
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    for strategy in strategies:
        for seed in range(seeds):
            t = time.perf_counter()
            run = run_strategy(strategy, seed, oracle, test, ref, featurizer, routers, checkpoints)
            results[strategy].append(run)
            print(f"  {strategy:<17} seed {seed}: {time.perf_counter() - t:5.1f} s (choosing cells "
                  f"{run['choose_s']:.1f} s, fitting and scoring {run['fit_s']:.1f} s)", flush=True)
    report(results, full, total, total_usd)
    if not args.quick:
        t = time.perf_counter()
        partial_label_check(oracle, test, ref, featurizer)
        print(f"  ({time.perf_counter() - t:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"full": full, "checkpoints": list(checkpoints), "results": results}, indent=1))
        print(f"wrote {args.json}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
