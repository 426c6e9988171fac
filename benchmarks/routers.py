"""Speed and quality of every registered router on the shared benchmark data.

Run: ``python benchmarks/routers.py [--data ../shared/data] [--featurizer minilm|tfidf] [--quick]
[--only speed|mmlu|routerbench|routerdc7 ...] [--routers mf,classifier,...]``.

1. **Speed** (always): each router of ``available_routers()`` is fitted on the RouterBench ARC-Challenge +
   Winogrande training queries (11 candidates) with features computed once; then the time to route 10,000
   queries from precomputed features (``route_indices(F, lam=...)``, embedding excluded), one decision (the
   median of repeated single-row calls), and the fit time. Routers that need the true outcomes (the oracle)
   cannot route a feature matrix and show ``-``.
2. **Quality** (skipped with ``--quick``), each next to the baselines on the same split:
   * RouteLLM MMLU, a 50/50 split with seed 0: APGR and CPT(20/50/80 %) (% of calls to GPT-4);
   * RouterBench ARC-Challenge + Winogrande, train -> test: AIQ against every single model's, and the cost
     needed to reach gpt-4-1106-preview's test quality, as % of GPT-4's cost;
   * RouterDC's seven 7-8B models on MMLU, train -> test: best quality reached against the best single model.

MMLU and RouterDC files carry no costs: they are priced per token with the library's price table (see
``rag_routing.evaluation.token_costs``); RouterBench costs are the US $ in its files. Hyper-parameters are the
library defaults (tuned on training data only); the few per-benchmark settings are in ``VARIANTS``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.errors import RagRoutingError  # noqa: E402
from rag_routing.evaluation.benchmark import build_router, featurize, load_split  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.metrics import cost_to_reach  # noqa: E402
from rag_routing.evaluation.scorecard import Reference, evaluate_router, evaluate_single  # noqa: E402
from rag_routing.routers.registry import available_routers  # noqa: E402

BASELINES = ("oracle", "random", "best", "fixed", "cheapest")
GPT4 = "gpt-4-1106-preview"
N_ROUTE = 10_000

#: Extra configurations shown in the quality tables: (label, registry name, constructor arguments).
VARIANTS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "mmlu": [("classifier[subject]", "classifier", {"label_key": "subject"}),
             ("classifier[direct]", "classifier", {"mode": "direct"}),
             ("regressor[mlp]", "regressor", {"model": "mlp"}),
             ("mf[pairwise]", "mf", {"objective": "pairwise"}),
             # The subject labels train a subject classifier; routing reads only the question text.
             ("ensemble[+subject]", "ensemble", {"members": [
                 "tfidf_lr", {"router": "classifier", "label_key": "subject", "entropy_threshold": 1.0}, "mf"]})],
    "routerbench": [("classifier[task]", "classifier", {"label_key": "eval_name"}),
                    ("classifier[direct]", "classifier", {"mode": "direct"}),
                    ("regressor[mlp]", "regressor", {"model": "mlp"}),
                    ("mf[pairwise]", "mf", {"objective": "pairwise"})],
    "routerdc7": [("classifier[direct]", "classifier", {"mode": "direct"}),
                  ("regressor[mlp]", "regressor", {"model": "mlp"}),
                  ("mf[pairwise]", "mf", {"objective": "pairwise"})],
}


class ConcatFeaturizer:
    """MiniLM and TF-IDF-LSA vectors side by side (``--featurizer minilm+tfidf``), scaled to unit norm.

    Benchmark-only: it has no saved form, so routers fitted with it cannot be saved.
    """

    name = "minilm+tfidf-lsa-256"

    def __init__(self) -> None:
        from rag_routing.embeddings import make_featurizer

        self.parts = [make_featurizer("minilm"), make_featurizer("tfidf")]

    def fit(self, texts: list[str]) -> ConcatFeaturizer:
        for part in self.parts:
            part.fit(texts)
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        return (np.hstack([part.transform(texts) for part in self.parts]) / np.sqrt(len(self.parts))).astype(np.float32)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise RagRoutingError("the benchmark's concatenated featurizer cannot be saved")


def featurizer_spec(name: str) -> Any:
    return ConcatFeaturizer() if name == "minilm+tfidf" else name


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_data(root: Path) -> None:
    needed = [root / "routellm" / "mmlu" / "responses", root / "routerbench" / "arc_challenge_train.csv",
              root / "routerdc7" / "mmlu_train.json"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        fail(f"benchmark data not found: {', '.join(missing)}. Pass --data PATH to the shared data folder "
             "(the one with routellm/, routerbench/ and routerdc7/; see shared/data/README.md).")


def load_routerbench(root: Path) -> tuple[RoutingDataset, RoutingDataset]:
    folder = root / "routerbench"
    parts = [load_split(train=folder / f"{task}_train.csv", test=folder / f"{task}_test.csv")
             for task in ("arc_challenge", "winograde")]
    (arc_train, arc_test), (wino_train, wino_test) = parts
    return (arc_train.concat(wino_train, name="routerbench:arc+winogrande"),
            arc_test.concat(wino_test, name="routerbench:arc+winogrande"))


#: Routers to run (``--routers``); ``None`` = every registered one. Baselines always run.
SELECTED: set[str] | None = None


def router_list(dataset_key: str, names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    chosen = [n for n in names if n not in BASELINES and (SELECTED is None or n in SELECTED)]
    variants = [v for v in VARIANTS.get(dataset_key, []) if SELECTED is None or v[1] in SELECTED]
    return [(n, n, {}) for n in chosen] + variants + [(n, n, {}) for n in BASELINES]


def fit_all(items: list[tuple[str, str, dict[str, Any]]], train: RoutingDataset, featurizer: Any,
            on_error: Callable[[str, Exception], None]) -> list[tuple[str, Any, float]]:
    fitted = []
    for label, name, params in items:
        try:
            router = build_router(name, featurizer, seed=0, params=params)
            start = time.perf_counter()
            router.fit(train)
            fitted.append((label, router, time.perf_counter() - start))
        except (ImportError, AttributeError, RagRoutingError, ValueError) as exc:
            on_error(label, exc)
    return fitted


def skip(label: str, exc: Exception) -> None:
    print(f"  {label:<22} skipped: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ speed
def speed(train: RoutingDataset, test: RoutingDataset, featurizer: Any) -> None:
    print(f"\n== Speed: fitted on {train.name} ({len(train)} queries, {train.n_candidates} candidates, "
          f"{featurizer.name} features); routing {N_ROUTE:,} precomputed feature rows")
    F = np.resize(test.embeddings, (N_ROUTE, test.embeddings.shape[1])).astype(np.float32)
    lam = 1.0 / float(np.mean(train.mean_cost()))
    print(f"  {'router':<22} {'fit s':>8} {'10k queries ms':>15} {'1 decision ms':>14}")
    for label, router, fit_s in fit_all(router_list("", available_routers()), train, featurizer, skip):
        try:
            router.route_indices(F[:10], lam=lam)  # warm-up: lazy indexes, caches
            start = time.perf_counter()
            router.route_indices(F, lam=lam)
            batch_ms = (time.perf_counter() - start) * 1e3
            single = []
            for i in range(30):
                start = time.perf_counter()
                router.route_indices(F[i:i + 1], lam=lam)
                single.append((time.perf_counter() - start) * 1e3)
            print(f"  {label:<22} {fit_s:>8.2f} {batch_ms:>15.1f} {statistics.median(single):>14.3f}")
        except RagRoutingError as exc:
            print(f"  {label:<22} {fit_s:>8.2f} {'-':>15} {'-':>14}  ({type(exc).__name__}: {str(exc)[:60]})")


# ------------------------------------------------------------------ quality
def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def mmlu_table(root: Path, spec: Any) -> None:
    train, test = load_split(root / "routellm" / "mmlu" / "responses", test_size=0.5, seed=0)
    train, test, featurizer = featurize(train, test, spec, progress=False)
    ref = Reference.from_test(test)
    print(f"\n== RouteLLM MMLU, 50/50 split seed 0 ({len(train)} train / {len(test)} test, {featurizer.name}); "
          f"weak {ref.weak} {ref.quality_of(ref.weak):.4f}, strong {ref.strong} {ref.quality_of(ref.strong):.4f}")
    print("   CPT = % of calls to the strong model needed to recover 20/50/80 % of the quality gap")
    print(f"  {'router':<22} {'APGR':>6} {'CPT20':>6} {'CPT50':>6} {'CPT80':>6} {'fit s':>7}")
    for label, router, fit_s in fit_all(router_list("mmlu", available_routers()), train, featurizer, skip):
        r = evaluate_router(router, test, ref, name=label)
        c = r.cpt or {}
        print(f"  {label:<22} {fmt(r.apgr, '.3f'):>6} {fmt(_pct(c.get('20')), '.1f'):>6} "
              f"{fmt(_pct(c.get('50')), '.1f'):>6} {fmt(_pct(c.get('80')), '.1f'):>6} {fit_s:>7.1f}")


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def routerbench_table(train: RoutingDataset, test: RoutingDataset, featurizer: Any) -> None:
    ref = Reference.from_test(test)
    gpt4 = test.candidate_index(GPT4)
    gpt4_cost, gpt4_quality = ref.single_cost[gpt4], ref.single_quality[gpt4]
    singles = [evaluate_single(test, name, ref) for name in test.candidates]
    best_single_aiq = max(s.aiq for s in singles)
    print(f"\n== RouterBench ARC-Challenge + Winogrande, train -> test ({len(train)} / {len(test)}, {featurizer.name})")
    print(f"   GPT-4 test quality {gpt4_quality:.4f} at ${gpt4_cost * 1e3:.3f} per 1k queries; best single-model "
          f"AIQ {best_single_aiq:.4f} ({max(singles, key=lambda s: s.aiq).router})")
    print(f"  {'router':<22} {'AIQ':>7} {'>single':>7} {'max q':>7} {'% GPT-4 $ @GPT-4 q':>19} {'fit s':>7}")
    for label, router, fit_s in fit_all(router_list("routerbench", available_routers()), train, featurizer, skip):
        r = evaluate_router(router, test, ref, name=label)
        reach = cost_to_reach(r.curve["cost"], r.curve["quality"], gpt4_quality)
        share = None if reach is None else 100.0 * reach / gpt4_cost
        print(f"  {label:<22} {r.aiq:>7.4f} {'yes' if r.aiq > best_single_aiq else 'no':>7} {r.max_quality:>7.4f} "
              f"{fmt(share, '.1f'):>19} {fit_s:>7.1f}")
    for s in sorted(singles, key=lambda s: -s.aiq)[:3]:
        print(f"  {'single ' + s.router[-15:]:<22} {s.aiq:>7.4f} {'':>7} {s.max_quality:>7.4f}")


def routerdc_table(root: Path, spec: Any) -> None:
    train, test = load_split(train=root / "routerdc7" / "mmlu_train.json", test=root / "routerdc7" / "mmlu_test.json")
    train, test, featurizer = featurize(train, test, spec, progress=False)
    ref = Reference.from_test(test)
    print(f"\n== RouterDC 7 models, MMLU train -> test ({len(train)} / {len(test)}, {featurizer.name}); best single "
          f"{ref.best_single} {ref.best_quality:.4f}")
    print(f"  {'router':<22} {'max quality':>11} {'> best single':>13} {'fit s':>7}")
    for label, router, fit_s in fit_all(router_list("routerdc7", available_routers()), train, featurizer, skip):
        r = evaluate_router(router, test, ref, name=label)
        print(f"  {label:<22} {r.max_quality:>11.4f} {'yes' if r.max_quality > ref.best_quality else 'no':>13} "
              f"{fit_s:>7.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default {default_data})")
    parser.add_argument("--featurizer", choices=("minilm", "tfidf", "minilm+tfidf"), default="minilm")
    parser.add_argument("--quick", action="store_true", help="speed only")
    parser.add_argument("--only", choices=("speed", "mmlu", "routerbench", "routerdc7"), action="append",
                        help="sections to run (repeatable; default all)")
    parser.add_argument("--routers", help="comma-separated registry names to run (default all; baselines always)")
    args = parser.parse_args(argv)
    global SELECTED
    if args.routers:
        SELECTED = {n.strip() for n in args.routers.split(",") if n.strip()}
        unknown = SELECTED - set(available_routers())
        if unknown:
            fail(f"unknown routers {sorted(unknown)}; available: {', '.join(available_routers())}")
    check_data(args.data)
    tables = ["speed"] if args.quick else (args.only or ["speed", "mmlu", "routerbench", "routerdc7"])
    rb_train, rb_test, featurizer = None, None, None
    if "speed" in tables or "routerbench" in tables:
        rb_train, rb_test = load_routerbench(args.data)
        rb_train, rb_test, featurizer = featurize(rb_train, rb_test, featurizer_spec(args.featurizer),
                                                    progress=False)
    if "speed" in tables:
        speed(rb_train, rb_test, featurizer)
    if "mmlu" in tables:
        mmlu_table(args.data, featurizer_spec(args.featurizer))
    if "routerbench" in tables:
        routerbench_table(rb_train, rb_test, featurizer)
    if "routerdc7" in tables:
        routerdc_table(args.data, featurizer_spec(args.featurizer))


if __name__ == "__main__":
    main()
