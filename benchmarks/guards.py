"""Doing no harm, measured: support, fallback and shrinkage on RouterBench, in distribution and across tasks.

Run: ``python benchmarks/guards.py [--data ../shared/data] [--featurizer minilm|tfidf] [--routers cluster,mf,...]
[--only routers|cascades]``

For each direction (ARC-Challenge train -> Winogrande test, Winogrande train -> ARC-Challenge test) and each
router, fitted once unguarded (``GuardSettings.off()``) and once with the default guards, it prints:

* ``oos in / out``: share of the in-distribution test (same task's test file) and of the other task's test
  flagged out of support (p < alpha = 0.01);
* ``AIQ in`` and ``AIQ out``: RouterBench's AIQ over the training cost range, raw -> guarded, next to the
  ``fixed`` policy's (for each λ, the candidate with the best training-mean quality - λ·cost);
* ``MSE in``: mean squared error of the predicted quality on the in-distribution test, raw -> guarded;
* what the shrinkage fit decided (its held-out gate).

Cascades (``cascade``, ``multi_cascade``; judge on TF-IDF features) replayed on recorded answers, in distribution
and across tasks: AIQ next to ``fixed``, whether the judge's first-call scores drifted from calibration (then
the cascade falls back to the fixed policy), and the most it paid per query against the priciest model.

MiniLM embeddings are cached on disk (``RAG_ROUTING_CACHE``): the first run embeds ~2,750 queries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.decision import select  # noqa: E402
from rag_routing.evaluation.loaders import load_dataset  # noqa: E402
from rag_routing.evaluation.metrics import aiq  # noqa: E402
from rag_routing.evaluation.sweep import lambda_grid, realised, sweep_router  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402
from rag_routing.routers.support import GuardSettings  # noqa: E402


def fixed_aiq(train, test, cost_range) -> float:
    """AIQ of the policy with no per-query signal: per λ, the best training-mean quality - λ·cost."""
    S = np.tile(np.nan_to_num(train.mean_quality()), (len(test), 1))
    C = np.tile(train.mean_cost(), (len(test), 1))
    lams = lambda_grid(S, C)
    cost, quality = realised(test, np.stack([select(S, C, float(lam)) for lam in lams]))
    return aiq(cost, quality, cost_range)


def mse(S, test) -> float:
    known = ~np.isnan(test.quality)
    return float(np.mean((S[known] - test.quality[known]) ** 2))


def with_responses(path: Path):
    """A RouterBench file with its recorded answers (what cascades replay)."""
    from dataclasses import replace

    from rag_routing.evaluation.loaders.files import read_csv
    from rag_routing.evaluation.loaders.routerbench import load_routerbench, prompt_text

    ds = load_routerbench(path)
    header, rows = read_csv(path)
    at = [header.index(f"{c}|model_response") for c in ds.candidates]
    return replace(ds, responses=[[prompt_text(r[j]) if r[j].strip() else None for j in at] for r in rows])


def cascades(folder: Path, featurizer: str) -> None:
    """Cascade and multi-choice cascade across tasks: judge drift detected, AIQ, most paid per query."""
    files = {t: (with_responses(folder / f"{t}_train.csv"), with_responses(folder / f"{t}_test.csv"))
             for t in ("arc_challenge", "winograde")}
    print("\ncascades (tfidf judge features): AIQ over the training cost range; max $ per query vs the priciest model")
    for source, target in (("arc_challenge", "winograde"), ("winograde", "arc_challenge")):
        train = files[source][0]
        cost_range = (float(np.nanmin(train.mean_cost())), float(np.nanmax(train.mean_cost())))
        for name in ("cascade", "multi_cascade"):
            router = create_router(name, featurizer=featurizer).fit(train)
            for label, test in (("in", files[source][1]), ("out", files[target][1])):
                points = router.operating_points(test)
                drift = router.last_judge_drift_
                paid = float(points.cost.max())
                print(f"  {name:13s} {source} -> {label:3s} AIQ {aiq(points.cost, points.quality, cost_range):.4f} "
                      f"(fixed {fixed_aiq(train, test, cost_range):.4f}) | judge drifted {drift.drifted} "
                      f"({drift.reason}) | max mean $ {paid:.5f} vs priciest {float(np.nanmax(test.mean_cost())):.5f}",
                      flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--featurizer", default="minilm")
    parser.add_argument("--routers", default="knn,cluster,mf,classifier,regressor")
    parser.add_argument("--only", choices=("routers", "cascades"), default=None)
    args = parser.parse_args()
    folder = Path(args.data) / "routerbench"
    if args.only != "routers":
        cascades(folder, "tfidf")
    if args.only == "cascades":
        return 0
    files = {t: (load_dataset(folder / f"{t}_train.csv"), load_dataset(folder / f"{t}_test.csv"))
             for t in ("arc_challenge", "winograde")}
    print(f"featurizer {args.featurizer}; AIQ over the training cost range; raw -> guarded")
    for source, target in (("arc_challenge", "winograde"), ("winograde", "arc_challenge")):
        train, same = files[source]
        other = files[target][1]
        cost_range = (float(np.nanmin(train.mean_cost())), float(np.nanmax(train.mean_cost())))
        print(f"\n{source} train -> {source} test (in) / {target} test (out); fixed AIQ in "
              f"{fixed_aiq(train, same, cost_range):.4f}, out {fixed_aiq(train, other, cost_range):.4f}")
        for name in args.routers.split(","):
            row = {}
            for mode in ("raw", "guarded"):
                router = create_router(name, featurizer=args.featurizer)
                if mode == "raw":
                    router.guard_settings = GuardSettings.off()
                started = time.perf_counter()
                router.fit(train)
                row[mode] = {
                    "fit_s": time.perf_counter() - started,
                    "in": aiq(*(lambda p: (p.cost, p.quality))(sweep_router(router, same)), cost_range),
                    "out": aiq(*(lambda p: (p.cost, p.quality))(sweep_router(router, other)), cost_range),
                    "mse": mse(router.predict_quality(same), same),
                    "oos": (router.out_of_support(same).mean(), router.out_of_support(other).mean()),
                    "notes": "; ".join(getattr(getattr(router, "guards_", None), "notes", [])),
                }
            r, g = row["raw"], row["guarded"]
            print(f"  {name:11s} oos in {g['oos'][0]:.3f} out {g['oos'][1]:.3f} | AIQ in {r['in']:.4f} -> "
                  f"{g['in']:.4f} | AIQ out {r['out']:.4f} -> {g['out']:.4f} | MSE in {r['mse']:.4f} -> "
                  f"{g['mse']:.4f} | fit {r['fit_s']:.1f}s -> {g['fit_s']:.1f}s | {g['notes'][:60]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
