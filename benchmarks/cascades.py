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

``vote_cascade`` (:class:`~rag_routing.routers.vote_cascade.VoteCascade`) replaces the scorer by the free
:class:`~rag_routing.routers.judges.AgreementJudge`: cheap voters answer in turn (chosen on train by
cross-validated AIQ) and the first answer their reliability-weighted vote trusts is kept, else GPT-4 answers.
A second table gives every cascade per task (each task's own GPT-4 quality and cost as the target).

The last tables ask what a judge would need: where the voters agree, how GPT-4 compares with their vote; the
best any rule reading only the voters' answer pattern could do (choosing the patterns with the *test* labels: an
upper bound, not a router); and a synthetic judge that sees the truth through independent noise (AUC shown)
replayed on the scorer cascade's chain. RouterBench's costs are the US $ in its files.
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
from rag_routing.routers.vote_cascade import VoteCascade  # noqa: E402

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
    """ARC-Challenge then Winogrande, train and test (the test rows of task ``t`` are :func:`task_rows`)."""
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


def task_rows(root: Path) -> dict[str, np.ndarray]:
    """Row indices of each task in the concatenated test set."""
    sizes = [len(load_routerbench(root / "routerbench" / f"{t}_test.csv")) for t in TASKS]
    starts = np.cumsum([0, *sizes])
    return {t: np.arange(starts[k], starts[k + 1]) for k, t in enumerate(TASKS)}


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def row(label: str, result: Any, gpt4_quality: float, gpt4_cost: float, seconds: float | None, note: str = "") -> str:
    reach = cost_to_reach(result.curve["cost"], result.curve["quality"], gpt4_quality)
    share = None if reach is None else 100.0 * reach / gpt4_cost
    return (f"  {label:<24} {result.aiq:>7.4f} {result.max_quality:>7.4f} {fmt(share, '18.1f'):>18} "
            f"{fmt(seconds, '7.1f'):>7}  {note}")


def judge_auc(cascade: CascadeRouter, test: RoutingDataset, features: np.ndarray | None = None) -> list[str]:
    """ROC AUC of the judge's score of each step's answer (``-`` where it is constant: the vote's first step)."""
    from sklearn.metrics import roc_auc_score

    scores = cascade.step_scores(test, features)
    out = []
    for k, name in enumerate(cascade.order_[:-1]):
        y = test.quality[:, test.candidate_index(name)]
        known = ~np.isnan(y)
        constant = np.unique(scores[known, k]).size < 2 or np.unique(y[known]).size < 2
        auc = "-" if constant else format(roc_auc_score(y[known], scores[known, k]), ".3f")
        out.append(f"{name.split('/')[-1]} {auc}")
    return out


def per_task(routers: dict[str, Any], test: RoutingDataset, tasks: dict[str, np.ndarray]) -> None:
    """Every router (fitted on both tasks) on each task's test rows, against that task's GPT-4."""
    print("\n== Per task: the same fitted routers on each task's test rows; target: that task's GPT-4 quality")
    print(f"  {'task':<14} {'router':<24} {'AIQ':>7} {'max q':>7} {'% GPT-4 $ @GPT-4 q':>18}  notes")
    for task, rows in [*tasks.items(), ("combined", np.arange(len(test)))]:
        sub = test.subset(rows)
        ref = Reference.from_test(sub)
        g = sub.candidate_index(GPT4)
        print(f"  {task:<14} {'single GPT-4':<24} {'':>7} {ref.single_quality[g]:>7.4f} {100.0:>18.1f}  "
              f"${ref.single_cost[g] * 1e3:.3f} per 1k queries")
        for label, router in routers.items():
            if isinstance(router, CascadeRouter):
                result = summarise(label, "cascade", router.operating_points(sub), ref)
            else:
                result = evaluate_router(router, sub, ref, name=label)
            reach = cost_to_reach(result.curve["cost"], result.curve["quality"], ref.single_quality[g])
            share = None if reach is None else 100.0 * reach / ref.single_cost[g]
            note = f"judge AUC {', '.join(judge_auc(router, sub))}" if isinstance(router, VoteCascade) else ""
            print(f"  {task:<14} {label:<24} {result.aiq:>7.4f} {result.max_quality:>7.4f} {fmt(share, '18.1f'):>18}"
                  f"  {note}")


def _pattern_policy(q: np.ndarray, c: np.ndarray, keys: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The best policy over answer patterns at ``lam`` (quality per $), found *with the labels* by dynamic
    programming: after each voter, for the rows showing the same pattern of agreement so far, keep the best
    voter's answer, call the next voter, or call the final model (last column of ``q`` and ``c``).

    Returns (column answering, $ paid) per row."""
    n, m = keys.shape
    pick, paid = np.full(n, m), np.zeros(n)

    def canon(row: np.ndarray) -> tuple[int, ...]:
        seen: dict[str, int] = {}
        return tuple(-1 if k == "" else seen.setdefault(str(k), len(seen)) for k in row)

    def solve(rows: np.ndarray, k: int) -> tuple[float, list[tuple[np.ndarray, int, np.ndarray]]]:
        spent = c[rows, :k].sum(axis=1)
        options = [(q[rows, m].sum() - lam * (spent + c[rows, m]).sum(), [(rows, m, spent + c[rows, m])])]
        if k:
            v = int(np.argmax(q[rows, :k].sum(axis=0)))
            options.append((q[rows, v].sum() - lam * spent.sum(), [(rows, v, spent)]))
        if k < m:
            groups: dict[tuple[int, ...], list[int]] = {}
            for r in rows:
                groups.setdefault(canon(keys[r, :k + 1]), []).append(int(r))
            parts = [solve(np.array(g), k + 1) for g in groups.values()]
            options.append((sum(p[0] for p in parts), [seg for p in parts for seg in p[1]]))
        return max(options, key=lambda o: o[0])

    for rows, column, cost in solve(np.arange(n), 0)[1]:
        pick[rows], paid[rows] = column, cost
    return pick, paid


def best_pattern_rule(test: RoutingDataset, rows: np.ndarray, cols: list[int], keys: np.ndarray,
                      tasks: dict[str, np.ndarray]) -> tuple[float | None, float]:
    """(% of GPT-4's cost at which the best pattern rule reaches GPT-4's quality, its best quality) on ``rows``.

    The rule may know the task: at one λ the best policy of several tasks is each task's best policy."""
    Q, C, K = test.quality[rows][:, cols], np.nan_to_num(test.cost[rows][:, cols]), keys[rows]
    parts = [part for part in (np.flatnonzero(np.isin(rows, r)) for r in tasks.values()) if part.size]
    points = []
    for lam in np.concatenate([[0.0], np.geomspace(10.0, 1e6, 60)]):
        pick, paid = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows))
        for part in parts:
            pick[part], paid[part] = _pattern_policy(np.nan_to_num(Q[part]), C[part], K[part], float(lam))
        points.append((paid.mean(), float(np.nanmean(Q[np.arange(len(rows)), pick]))))
    cost, quality = np.array(points).T
    reach = cost_to_reach(cost, quality, float(np.nanmean(Q[:, -1])))
    return None if reach is None else 100.0 * reach / float(C[:, -1].mean()), float(quality.max())


def vote_evidence(vote: VoteCascade, train: RoutingDataset, test: RoutingDataset,
                  tasks: dict[str, np.ndarray]) -> None:
    """Why no vote reaches GPT-4's quality cheaply: where the voters agree, GPT-4 is still right more often, and
    no rule reading the voters' answers does it, even one chosen with the test labels."""
    judge, g = vote.judge_, test.candidate_index(GPT4)
    chain = [test.candidate_index(v) for v in vote.order_[:-1]]
    every = [test.candidate_index(train.candidates[j]) for j in vote.voter_candidates(train)]
    keys = np.array([[judge.key(answer) for answer in r] for r in test.responses or []], dtype=str)
    names = " -> ".join(test.candidates[j].split("/")[-1] for j in [*chain, g])
    print(f"\n== Why the vote cascade stops short (uses the test labels: bounds, not routers); chain {names}")
    print("   best pattern rule: after each voter, per task and pattern of agreement so far, keep the best voter's "
          f"answer, ask the next voter or call GPT-4, chosen with the labels; 'every' = all {len(every)} cheap "
          "models as voters, cheapest first")
    print(f"  {'task':<14} {'voters agree':>12} {'vote q there':>12} {'GPT-4 q there':>13} "
          f"{'best rule: % GPT-4 $ @GPT-4 q (its max q)':>42} {'every cheap voter':>18}")
    for task, rows in [*tasks.items(), ("combined", np.arange(len(test)))]:
        K, Q = keys[rows][:, chain], test.quality[rows]
        agree = (K == K[:, :1]).all(axis=1) & (K[:, 0] != "")
        share, top = best_pattern_rule(test, rows, [*chain, g], keys[:, chain], tasks)
        share_all, top_all = best_pattern_rule(test, rows, [*every, g], keys[:, every], tasks)
        print(f"  {task:<14} {100 * agree.mean():>11.1f}% {np.nanmean(Q[agree, chain[0]]):>12.4f} "
              f"{np.nanmean(Q[agree, g]):>13.4f} {fmt(share, '33.1f'):>33} ({top:.4f}) "
              f"{fmt(share_all, '9.1f'):>9} ({top_all:.4f})")


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
    tasks = task_rows(args.data)
    train, test, featurizer = featurize(train, test, args.embedder, progress=False)
    ref = Reference.from_test(test)
    g = test.candidate_index(GPT4)
    gpt4_quality, gpt4_cost = ref.single_quality[g], ref.single_cost[g]
    print(f"== Cascades on {test.name}: train {len(train)} / test {len(test)}, {featurizer.name} query features")
    print(f"   GPT-4 test quality {gpt4_quality:.4f} at ${gpt4_cost * 1e3:.3f} per 1k queries; "
          f"target: GPT-4's quality at <= 35 % of its cost. Judges are local scorers ($0).")
    print(f"  {'router':<24} {'AIQ':>7} {'max q':>7} {'% GPT-4 $ @GPT-4 q':>18} {'fit s':>7}  notes")

    fitted: dict[str, Any] = {}
    for label, cascade in (("cascade", CascadeRouter(featurizer=featurizer)),
                           ("multi_cascade", MultiChoiceCascade(featurizer=featurizer, prior="cluster")),
                           ("multi_cascade[no prior]", MultiChoiceCascade(featurizer=featurizer, prior=None)),
                           ("vote_cascade", VoteCascade())):
        started = time.perf_counter()
        cascade.fit(train)
        seconds = time.perf_counter() - started
        fitted[label] = cascade
        result = summarise(label, "cascade", cascade.operating_points(test), ref)
        order = " -> ".join(c.split("/")[-1] for c in cascade.order_)
        note = f"pool {order}" if isinstance(cascade, MultiChoiceCascade) else f"order {order}"
        if label == "cascade":
            note += f"; judge AUC on test: {', '.join(judge_auc(cascade, test, cascade.features(test)))}"
            chain = [test.candidate_index(c) for c in cascade.order_]
        if label == "vote_cascade":
            note += f"; judge AUC on test: {', '.join(judge_auc(cascade, test))}"
        print(row(label, result, gpt4_quality, gpt4_cost, seconds, note))

    for name in [n.strip() for n in args.compare.split(",") if n.strip()]:
        started = time.perf_counter()
        router = build_router(name, featurizer, seed=0).fit(train)
        seconds = time.perf_counter() - started
        fitted.setdefault(name, router)
        print(row(name, evaluate_router(router, test, ref, name=name), gpt4_quality, gpt4_cost, seconds,
                  "pre-generation (λ sweep)"))
    for name in ("oracle", "random"):
        router = build_router(name, featurizer, seed=0).fit(train)
        print(row(name, evaluate_router(router, test, ref, name=name, kind="baseline"), gpt4_quality, gpt4_cost,
                  None, "baseline"))
    singles = sorted((evaluate_single(test, c, ref) for c in test.candidates), key=lambda r: -r.aiq)
    for single in singles[:3]:
        print(row(f"single {single.router.split('/')[-1]}", single, gpt4_quality, gpt4_cost, None))
    per_task({k: v for k, v in fitted.items() if k != "multi_cascade[no prior]"}, test, tasks)
    vote_evidence(fitted["vote_cascade"], train, test, tasks)
    noisy_oracle(test, chain, ref, gpt4_quality, gpt4_cost)


if __name__ == "__main__":
    main()
