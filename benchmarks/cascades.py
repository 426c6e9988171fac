"""Cascades on RouterBench (ARC-Challenge + Winogrande), offline, next to the pre-generation routers.

Run: ``python benchmarks/cascades.py [--data ../shared/data] [--embedder tfidf|minilm] [--compare cluster,knn]``.

Each model's recorded answer text (``<model>|model_response``) lets a cascade be replayed without calling any
model: the cascade trains its FrugalGPT-style :class:`~rag_routing.routers.judges.AnswerScorerJudge` on the
train split (and chooses its order there, by cross-validated AIQ over the cost-quality front), then on the test
split each query accepts the first answer whose score reaches the threshold; its cost is the sum of the costs of
every model it called (the local scorer itself costs $0). Sweeping the threshold (the λ of the multi-choice
cascade) gives the cost-quality curve, scored with the library's metrics (:mod:`rag_routing.evaluation.metrics`
through :func:`~rag_routing.evaluation.scorecard.summarise`): AIQ over the single models' cost range, and the
cost at which the curve's hull reaches GPT-4's test quality, as % of GPT-4's cost (target <= 35 %).

The last table asks what a judge would need: a synthetic judge that sees the truth through independent noise
(AUC shown) replayed on the same chain. RouterBench's costs are the US $ in its files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.evaluation.benchmark import build_router, featurize  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.loaders.files import read_csv  # noqa: E402
from rag_routing.evaluation.loaders.routerbench import load_routerbench, prompt_text  # noqa: E402
from rag_routing.evaluation.metrics import cost_to_reach  # noqa: E402
from rag_routing.evaluation.scorecard import (  # noqa: E402
    Reference,
    evaluate_router,
    evaluate_single,
    summarise,
)
from rag_routing.routers.cascade import CascadeRouter, replay_chain  # noqa: E402
from rag_routing.routers.multi_cascade import MultiChoiceCascade  # noqa: E402

GPT4 = "gpt-4-1106-preview"
TASKS = ("arc_challenge", "winograde")


def with_responses(path: Path) -> RoutingDataset:
    """A RouterBench file with each model's answer text (until the loader fills ``responses`` itself)."""
    dataset = load_routerbench(path)
    if dataset.responses is not None:
        return dataset
    header, rows = read_csv(path)
    at = [header.index(f"{c}|model_response") for c in dataset.candidates]
    return replace(dataset, responses=[[prompt_text(r[j]) if r[j].strip() else None for j in at] for r in rows])


def load(root: Path) -> tuple[RoutingDataset, RoutingDataset]:
    folder = root / "routerbench"
    missing = [str(folder / f"{t}_{s}.csv") for t in TASKS for s in ("train", "test")
               if not (folder / f"{t}_{s}.csv").exists()]
    if missing:
        print(f"error: RouterBench files not found: {', '.join(missing)}; pass --data (shared/data)", file=sys.stderr)
        raise SystemExit(2)
    train = [with_responses(folder / f"{t}_train.csv") for t in TASKS]
    test = [with_responses(folder / f"{t}_test.csv") for t in TASKS]
    name = "routerbench:arc+winogrande"
    return train[0].concat(train[1], name=name), test[0].concat(test[1], name=name)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def row(label: str, result: Any, gpt4_quality: float, gpt4_cost: float, seconds: float | None, note: str = "") -> str:
    reach = cost_to_reach(result.curve["cost"], result.curve["quality"], gpt4_quality)
    share = None if reach is None else 100.0 * reach / gpt4_cost
    return (f"  {label:<24} {result.aiq:>7.4f} {result.max_quality:>7.4f} {fmt(share, '18.1f'):>18} "
            f"{fmt(seconds, '7.1f'):>7}  {note}")


def judge_auc(cascade: CascadeRouter, test: RoutingDataset, features: np.ndarray | None) -> list[str]:
    from sklearn.metrics import roc_auc_score

    scores = cascade.step_scores(test, features)
    out = []
    for k, name in enumerate(cascade.order_[:-1]):
        y = test.quality[:, test.candidate_index(name)]
        known = ~np.isnan(y)
        out.append(f"{name.split('/')[-1]} {roc_auc_score(y[known], scores[known, k]):.3f}")
    return out


def noisy_oracle(test: RoutingDataset, chain: list[int], ref: Reference, gpt4_quality: float, gpt4_cost: float,
                 seed: int = 0) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    names = " -> ".join(test.candidates[j].split("/")[-1] for j in chain)
    print(f"\n== What the judge must achieve: a judge seeing the truth through independent noise, chain {names}")
    print(f"  {'noise sd':<10} {'judge AUC':>9} {'AIQ':>7} {'max q':>7} {'% GPT-4 $ @GPT-4 q':>18}")
    truth = np.nan_to_num(test.quality[:, chain[:-1]], nan=0.0)
    for sd in (0.0, 0.5, 0.7, 1.0, 1.5):
        scores = truth + rng.normal(0.0, sd, truth.shape)
        points = replay_chain(test, chain, scores, np.linspace(scores.min() - 1, scores.max() + 1, 401))
        result = summarise(f"oracle+noise {sd}", "cascade", points, ref)
        known = ~np.isnan(test.quality[:, chain[0]])
        auc = roc_auc_score(test.quality[known, chain[0]], scores[known, 0])
        reach = cost_to_reach(points.cost, points.quality, gpt4_quality)
        print(f"  {sd:<10.1f} {auc:>9.3f} {result.aiq:>7.4f} {result.max_quality:>7.4f} "
              f"{fmt(None if reach is None else 100 * reach / gpt4_cost, '18.1f'):>18}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default {default_data})")
    parser.add_argument("--embedder", default="tfidf", help="query features: tfidf (default, no torch) or minilm")
    parser.add_argument("--compare", default="cluster,mf,knn", help="pre-generation routers in the same table")
    args = parser.parse_args(argv)
    train, test = load(args.data)
    train, test, featurizer = featurize(train, test, args.embedder, progress=False)
    ref = Reference.from_test(test)
    g = test.candidate_index(GPT4)
    gpt4_quality, gpt4_cost = ref.single_quality[g], ref.single_cost[g]
    print(f"== Cascades on {test.name}: train {len(train)} / test {len(test)}, {featurizer.name} query features")
    print(f"   GPT-4 test quality {gpt4_quality:.4f} at ${gpt4_cost * 1e3:.3f} per 1k queries; "
          f"target: GPT-4's quality at <= 35 % of its cost. Judges are local scorers ($0).")
    print(f"  {'router':<24} {'AIQ':>7} {'max q':>7} {'% GPT-4 $ @GPT-4 q':>18} {'fit s':>7}  notes")

    for label, cascade in (("cascade", CascadeRouter(featurizer=featurizer)),
                           ("multi_cascade", MultiChoiceCascade(featurizer=featurizer, prior="cluster")),
                           ("multi_cascade[no prior]", MultiChoiceCascade(featurizer=featurizer, prior=None))):
        started = time.perf_counter()
        cascade.fit(train)
        seconds = time.perf_counter() - started
        result = summarise(label, "cascade", cascade.operating_points(test), ref)
        order = " -> ".join(c.split("/")[-1] for c in cascade.order_)
        note = f"order {order}" if label == "cascade" else f"pool {order}"
        if label == "cascade":
            note += f"; judge AUC on test: {', '.join(judge_auc(cascade, test, cascade.features(test)))}"
            chain = [test.candidate_index(c) for c in cascade.order_]
        print(row(label, result, gpt4_quality, gpt4_cost, seconds, note))

    for name in [n.strip() for n in args.compare.split(",") if n.strip()]:
        started = time.perf_counter()
        router = build_router(name, featurizer, seed=0).fit(train)
        seconds = time.perf_counter() - started
        print(row(name, evaluate_router(router, test, ref, name=name), gpt4_quality, gpt4_cost, seconds,
                  "pre-generation (λ sweep)"))
    for name in ("oracle", "random"):
        router = build_router(name, featurizer, seed=0).fit(train)
        print(row(name, evaluate_router(router, test, ref, name=name, kind="baseline"), gpt4_quality, gpt4_cost,
                  None, "baseline"))
    singles = sorted((evaluate_single(test, c, ref) for c in test.candidates), key=lambda r: -r.aiq)
    for single in singles[:3]:
        print(row(f"single {single.router.split('/')[-1]}", single, gpt4_quality, gpt4_cost, None))
    noisy_oracle(test, chain, ref, gpt4_quality, gpt4_cost)


if __name__ == "__main__":
    main()
