"""Candidate lifecycle on RouterBench: add the 11th model from a few anchor queries, prune redundant ones.

Run: ``python benchmarks/pool.py [--data ../shared/data] [--featurizer minilm|tfidf] [--quick]``.

Setup (stated with every table):

* RouterBench ARC-Challenge + Winogrande, train -> test (1,926 / 825 queries, 11 models, US $ from the files);
  AIQ is the library's (:func:`rag_routing.evaluation.metrics.aiq`) over the single models' cost range.
* Features: MiniLM vectors read from the embedding cache (default; nothing is embedded), or TF-IDF-LSA fitted
  on the training prompts (``--featurizer tfidf``, no cache needed). The line above the tables counts the
  distinct training vectors: if the prompts kept their shared 5-shot prefix, MiniLM (256 word pieces) would
  give a whole task one vector and a similarity router would degrade to a per-task router.
* "refit on 11": a ClusterRouter fitted on all 11 models with all training outcomes. "10 + new": a
  ClusterRouter fitted on the other 10, then the new model added with ``add_candidate`` from its outcomes on
  anchors only (2 / 5 / 10 % of the training queries), chosen by k-means medoids (cluster), disagreement of
  the existing models per k-means stratum (uncertainty) or at random (mean of 3 seeds); "+impute" first
  predicts its outcome on every training query from the anchors (ridge on the other models' outcomes).
* Pruning: dominated (no better in any query cluster, no cheaper) and redundant (within 0.02) candidates on
  the training set, what keeping each costs under the refit router, and the AIQ of the pool without them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingCache, PrecomputedFeaturizer  # noqa: E402
from rag_routing.evaluation.benchmark import featurize  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.loaders import load_routerbench  # noqa: E402
from rag_routing.evaluation.scorecard import Reference, evaluate_router  # noqa: E402
from rag_routing.pool import (  # noqa: E402
    ANCHOR_METHODS,
    find_dominated,
    find_redundant,
    keeping_cost,
    profile_candidate,
    remove_candidate,
    select_anchor_queries,
)
from rag_routing.routers.similarity import ClusterRouter  # noqa: E402

NEW = ("gpt-4-1106-preview", "claude-v2")
TASKS = ("arc_challenge", "winograde")


def load(data: Path, featurizer: str) -> tuple[RoutingDataset, RoutingDataset, object]:
    folder = data / "routerbench"
    train, test = (load_routerbench(folder / f"{TASKS[0]}_{split}.csv").concat(
        load_routerbench(folder / f"{TASKS[1]}_{split}.csv")) for split in ("train", "test"))
    if featurizer == "tfidf":
        return featurize(train, test, "tfidf", progress=False)
    cache_dir = Path(os.environ.get("RAG_ROUTING_CACHE", Path.home() / ".cache" / "rag_routing"))
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    out = []
    for ds in (train, test):
        vectors = cache.get_many(DEFAULT_EMBEDDING_MODEL, ds.queries)
        if any(v is None for v in vectors):
            print("error: RouterBench prompts missing from the MiniLM cache; use --featurizer tfidf",
                  file=sys.stderr)
            raise SystemExit(2)
        out.append(ds.with_embeddings(np.vstack(vectors), DEFAULT_EMBEDDING_MODEL))
    return out[0], out[1], PrecomputedFeaturizer(DEFAULT_EMBEDDING_MODEL)


def aiq_of(router: ClusterRouter, test: RoutingDataset, ref: Reference) -> float:
    return evaluate_router(router, test.select_candidates(router.candidates_), ref).aiq


def add_table(train: RoutingDataset, test: RoutingDataset, featurizer: object, fractions: list[float]) -> bool:
    ref = Reference.from_test(test)
    make = lambda: ClusterRouter(featurizer=featurizer)  # noqa: E731
    full = aiq_of(make().fit(train), test, ref)
    print(f"\n== Add the 11th model without refitting (ClusterRouter, {featurizer.name}); refit on all 11: "
          f"AIQ {full:.4f}")
    print(f"  {'new model':<20} {'anchors':>12} {'method':<12} {'AIQ':>7} {'|Δ| vs refit':>12} "
          f"{'+impute AIQ':>11} {'|Δ|':>7}")
    ok = True
    for new in NEW:
        others = [c for c in train.candidates if c != new]
        j = train.candidate_index(new)
        without = aiq_of(make().fit(train.select_candidates(others)), test, ref)
        print(f"  {new:<20} {'none (10)':>12} {'-':<12} {without:>7.4f}")
        for frac in fractions:
            n = int(frac * len(train))
            for method in ANCHOR_METHODS:
                values = {False: [], True: []}
                for seed in (range(3) if method == "random" else [0]):
                    anchors = select_anchor_queries(train, n, method, candidates=others, seed=seed)
                    for impute in (False, True):
                        router = make().fit(train.select_candidates(others))
                        profile_candidate(new, train.quality[anchors, j], train.subset(anchors),
                                          cost=float(np.nanmean(train.cost[anchors, j])), routers=[router],
                                          impute_from=train.select_candidates(others) if impute else None)
                        values[impute].append(aiq_of(router, test, ref))
                plain, imputed = float(np.mean(values[False])), float(np.mean(values[True]))
                if frac <= 0.10:
                    ok &= abs(plain - full) <= 0.02
                print(f"  {'':<20} {f'{n} ({100 * frac:.0f} %)':>12} {method:<12} {plain:>7.4f} "
                      f"{abs(plain - full):>12.4f} {imputed:>11.4f} {abs(imputed - full):>7.4f}")
    print(f"  target (within 0.02 AIQ of the refit, anchors <= 10 % of training queries, no imputation): "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def prune_table(train: RoutingDataset, test: RoutingDataset, featurizer: object) -> None:
    ref = Reference.from_test(test)
    router = ClusterRouter(featurizer=featurizer).fit(train)
    dominated = find_dominated(train, features=train.embeddings)
    redundant = find_redundant(train, 0.02, features=train.embeddings)
    print(f"\n== Pruning ({featurizer.name} clusters of the training queries; keeping costs on test, ClusterRouter)")
    print(f"  {'candidate':<34} {'covered by':<28} {'kind':<10} {'+$/call':>9} {'oracle loss':>11} "
          f"{'share λ=0':>9} {'+$ / 1k λ=0':>11} {'share λ=100':>11} {'+$ / 1k':>8} {'ΔAIQ':>7}")
    dominated_names = {r.candidate for r in dominated}
    for r in redundant:
        k0, k100 = keeping_cost(router, test, r.candidate, lam=0.0), keeping_cost(router, test, r.candidate, lam=100.0)
        kind = "dominated" if r.candidate in dominated_names else f"±{r.max_advantage:.3f}"
        print(f"  {r.candidate:<34} {r.covered_by:<28} {kind:<10} {r.extra_cost:>9.2e} {r.oracle_loss:>11.4f} "
              f"{k0.share:>9.3f} {k0.extra_usd_per_1k:>11.4f} {k100.share:>11.3f} {k100.extra_usd_per_1k:>8.4f} "
              f"{k0.aiq_with - k0.aiq_without:>7.4f}")
    full = aiq_of(router, test, ref)
    for label, names in (("dominated", dominated_names), ("redundant", {r.candidate for r in redundant})):
        pruned = ClusterRouter(featurizer=featurizer).fit(train)
        for name in sorted(names):
            remove_candidate(name, [pruned])
        print(f"  without the {len(names)} {label}: {len(pruned.candidates_)} candidates, "
              f"AIQ {aiq_of(pruned, test, ref):.4f} (all 11: {full:.4f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--featurizer", choices=("minilm", "tfidf"), default="minilm")
    parser.add_argument("--quick", action="store_true", help="10 %% anchors only, no pruning table")
    args = parser.parse_args(argv)
    if not (args.data / "routerbench").is_dir():
        print(f"error: no RouterBench data under {args.data}; pass --data", file=sys.stderr)
        raise SystemExit(2)
    warnings.filterwarnings("ignore", category=UserWarning)  # k-means on duplicate MiniLM vectors
    start = time.perf_counter()
    train, test, featurizer = load(args.data, args.featurizer)
    distinct = len(np.unique(train.embeddings.round(4), axis=0))
    print(f"RouterBench ARC-Challenge + Winogrande: {len(train)} train / {len(test)} test queries, "
          f"{train.n_candidates} models; {distinct} distinct {featurizer.name} training vectors")
    add_table(train, test, featurizer, [0.10] if args.quick else [0.02, 0.05, 0.10])
    if not args.quick:
        prune_table(train, test, featurizer)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
