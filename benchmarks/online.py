"""Online routers on RouteLLM MMLU: replay 5,000 queries through each bandit, report reward and regret.

Run: ``python benchmarks/online.py [--data ../shared/data] [--seeds 5] [--lams 100] [--steps 5000]
[--embed-missing]``.

Setup (stated with every table):

* Data: RouteLLM's MMLU outcomes of Mixtral-8x7B and GPT-4-1106 (14,037 prompts after decontamination), priced
  per token with the library's price table (prompt tokens + 8 output tokens for multiple choice).
* Features: MiniLM vectors read from the on-disk embedding cache (``$RAG_ROUTING_CACHE`` or
  ``~/.cache/rag_routing``); prompts without a cached vector are left out unless ``--embed-missing``.
* Per seed: a random permutation; the first ``--steps`` prompts are the stream, the rest is "history" whose
  queries (never outcomes) fit the bandits' PCA projection. Bandits start cold (no outcome known).
* Reward of a routed query: ``correct - λ·cost`` (US $). The default λ = 100 per $ (one right answer is worth
  one cent) is where cost matters: the two models' mean rewards are nearly equal, so which model to call
  depends on the query. ``--lams 25,50,100,200`` shows the other regimes.
* Regret is against the oracle (best reward per query in hindsight). "always-best" is the best fixed model in
  hindsight on the stream (the strongest context-free comparator); "best@warm-up" is the model with the best
  mean reward on 500 labelled history prompts, then fixed.
* Off-policy check: the ε-greedy run's logs (with its propensities) estimate the value of LinUCB's final
  greedy policy by IPS, SNIPS and DR, next to that policy's true value on the stream.
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

from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingCache, PrecomputedFeaturizer  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.loaders import load_routellm  # noqa: E402
from rag_routing.evaluation.off_policy import evaluate_policy  # noqa: E402
from rag_routing.evaluation.replay import (  # noqa: E402
    ReplayResult,
    make_stream,
    replay,
    replay_fixed,
    replay_oracle,
    replay_random,
)
from rag_routing.routers.bandits import (  # noqa: E402
    EpsilonGreedyRouter,
    LinearRewardInactionRouter,
    LinUCBRouter,
    ThompsonRouter,
)

BANDITS = ("linucb", "thompson", "epsilon_greedy", "lri")
ORDER = (*BANDITS, "always-best", "best@warm-up", "random", "oracle")


def load_mmlu(data: Path, embed_missing: bool) -> RoutingDataset:
    """MMLU outcomes with cached MiniLM vectors attached (rows without one dropped unless embed_missing)."""
    ds = load_routellm(data / "routellm" / "mmlu" / "responses")
    cache_dir = Path(os.environ.get("RAG_ROUTING_CACHE", Path.home() / ".cache" / "rag_routing"))
    vectors = EmbeddingCache(cache_dir / "embeddings.sqlite").get_many(DEFAULT_EMBEDDING_MODEL, ds.queries)
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing and embed_missing:
        from rag_routing.embeddings import SentenceTransformerEmbedder

        fresh = SentenceTransformerEmbedder(cache=True).transform([ds.queries[i] for i in missing])
        for i, v in zip(missing, fresh):
            vectors[i] = v
        missing = []
    keep = np.array([v is not None for v in vectors])
    print(f"RouteLLM MMLU: {len(ds)} prompts, {int(keep.sum())} with cached MiniLM vectors "
          f"({len(missing)} left out; --embed-missing embeds them). Costs: {ds.cost_source}")
    ds = ds.subset(np.flatnonzero(keep))
    return ds.with_embeddings(np.vstack([v for v in vectors if v is not None]), DEFAULT_EMBEDDING_MODEL)


def make_bandit(name: str, lam: float, seed: int):
    features = PrecomputedFeaturizer(DEFAULT_EMBEDDING_MODEL)
    if name == "linucb":
        return LinUCBRouter(alpha=0.5, lam=lam, seed=seed, featurizer=features)
    if name == "thompson":
        return ThompsonRouter(scale=0.3, lam=lam, seed=seed, featurizer=features)
    if name == "epsilon_greedy":
        return EpsilonGreedyRouter(epsilon=0.1, lam=lam, seed=seed)
    return LinearRewardInactionRouter(learning_rate=0.05, lam=lam, seed=seed)


def run_seed(ds: RoutingDataset, lam: float, steps: int, seed: int) -> tuple[dict[str, ReplayResult], dict]:
    order = np.random.default_rng(seed).permutation(len(ds))
    history, stream_set = ds.subset(order[steps:]), ds.subset(order[:steps])
    stream = make_stream(stream_set, lam, steps, seed=seed)
    results: dict[str, ReplayResult] = {}
    bandits = {}
    for name in BANDITS:
        bandit = make_bandit(name, lam, seed)
        bandit.start(ds.candidates, ds.mean_cost(), history if bandit.uses_features else None)
        results[name] = replay(bandit, stream)
        bandits[name] = bandit
    warm = history.subset(np.arange(500))
    warm_arm = int(np.argmax(np.nanmean(warm.quality - lam * warm.cost, axis=0)))
    results["always-best"] = replay_fixed(stream)
    results["best@warm-up"] = replay_fixed(stream, warm_arm, name="best@warm-up")
    results["random"] = replay_random(stream, seed=seed)
    results["oracle"] = replay_oracle(stream)
    # Off-policy: judge LinUCB's final greedy policy on the epsilon-greedy logs.
    features = stream.dataset.subset(stream.rows).embeddings
    target = bandits["linucb"].route_indices(features, lam=lam)
    truth = float(stream.rewards[np.arange(len(stream)), target].mean())
    report = evaluate_policy(results["epsilon_greedy"].to_logs(features), target)
    return results, {"truth": truth, "report": report}


def print_table(lam: float, steps: int, runs: list[dict[str, ReplayResult]]) -> None:
    gpt4 = runs[0]["oracle"].candidates.index("gpt-4-1106-preview")
    print(f"\n== Replay, {steps} queries, reward = correct - {lam:g}·cost($), {len(runs)} seeds (mean ± sd)")
    print(f"  {'policy':<15} {'regret vs oracle':>18} {'vs always-best':>16} {'accuracy':>9} {'$ / 1k q':>9} "
          f"{'GPT-4 %':>8} {'s':>6}")
    for name in ORDER:
        rs = [run[name] for run in runs]
        reg = np.array([r.regret[-1] for r in rs])
        vs = np.array([r.regret_vs_best_fixed[-1] for r in rs])
        print(f"  {name:<15} {reg.mean():>10.1f} ± {reg.std():>5.1f} {vs.mean():>9.1f} ± {vs.std():>4.1f} "
              f"{np.mean([r.quality.mean() for r in rs]):>9.4f} {np.mean([r.cost.mean() for r in rs]) * 1e3:>9.4f} "
              f"{100 * np.mean([(r.arms == gpt4).mean() for r in rs]):>8.1f} {np.mean([r.seconds for r in rs]):>6.2f}")
    wins = [run["linucb"].regret[-1] < min(run["epsilon_greedy"].regret[-1], run["always-best"].regret[-1])
            for run in runs]
    print(f"  target (LinUCB regret < epsilon-greedy's and < always-best's): {sum(wins)}/{len(wins)} seeds "
          f"{'PASS' if all(wins) else 'FAIL'}")
    first = runs[0]
    marks = [m for m in (500, 1000, 2000, 3000, 4000, 5000) if m <= steps]
    print(f"  cumulative regret vs oracle, seed 0, after {marks} queries:")
    for name in BANDITS + ("always-best",):
        print(f"    {name:<15} " + " ".join(f"{first[name].regret[m - 1]:>7.1f}" for m in marks))


def print_off_policy(lam: float, checks: list[dict]) -> None:
    print(f"\n== Off-policy: LinUCB's final greedy policy judged on epsilon-greedy's logs (λ = {lam:g})")
    print(f"  {'seed':<5} {'true value':>10} {'IPS':>16} {'SNIPS':>16} {'DR':>16} {'ESS':>7}")
    for seed, check in enumerate(checks):
        r = check["report"]
        cells = " ".join(f"{e.value:>8.4f} ± {e.std_error:.4f}" for e in (r.ips, r.snips, r.dr))
        print(f"  {seed:<5} {check['truth']:>10.4f} {cells} {r.effective_sample_size:>7.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lams", default="100", help="comma-separated λ values (per US $)")
    parser.add_argument("--embed-missing", action="store_true", help="embed prompts missing from the cache")
    args = parser.parse_args(argv)
    if not (args.data / "routellm" / "mmlu" / "responses").is_dir():
        print(f"error: no RouteLLM MMLU data under {args.data}; pass --data", file=sys.stderr)
        raise SystemExit(2)
    start = time.perf_counter()
    ds = load_mmlu(args.data, args.embed_missing)
    for lam in (float(x) for x in args.lams.split(",")):
        outcomes = [run_seed(ds, lam, args.steps, seed) for seed in range(args.seeds)]
        print_table(lam, args.steps, [o[0] for o in outcomes])
        print_off_policy(lam, [o[1] for o in outcomes])
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
