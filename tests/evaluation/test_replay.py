"""Replay evaluation of bandits: regret bookkeeping, baselines, determinism, and the RouteLLM MMLU target."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import rag_routing.evaluation.replay as replay_module
from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.off_policy import evaluate_policy
from rag_routing.evaluation.replay import make_stream, replay, replay_fixed, replay_oracle, replay_random
from rag_routing.routers.bandits import EpsilonGreedyRouter, LinearRewardInactionRouter, LinUCBRouter

EMB = "toy"


def contextual(n: int = 1500, d: int = 8, seed: int = 0) -> RoutingDataset:
    """Two arms; arm 0 right on topic 0 (90 %), arm 1 on topic 1; arm 1 costs more."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    E = np.eye(d)[topic] + 0.3 * rng.standard_normal((n, d))
    E = (E / np.linalg.norm(E, axis=1, keepdims=True)).astype(np.float32)
    p = np.array([[0.9, 0.4], [0.3, 0.9]])
    Q = (rng.random((n, 2)) < p[topic]).astype(float)
    return RoutingDataset([f"q{i}" for i in range(n)], ["small", "large"], Q,
                          np.tile([0.001, 0.002], (n, 1))).with_embeddings(E, EMB)


def test_bookkeeping_and_baselines():
    ds = contextual(400)
    stream = make_stream(ds, lam=10.0, n=300, seed=1)
    result = replay(LinUCBRouter(featurizer=PrecomputedFeaturizer(EMB)), stream)
    assert result.arms.shape == result.rewards.shape == result.regret.shape == (300,)
    np.testing.assert_allclose(result.cumulative_reward[-1], result.rewards.sum())
    np.testing.assert_allclose(result.rewards, result.quality - 10.0 * result.cost)
    assert (np.diff(result.regret) >= -1e-12).all() and result.regret[-1] > 0
    oracle, best = replay_oracle(stream), replay_fixed(stream)
    assert oracle.regret[-1] == pytest.approx(0.0) and best.regret_vs_best_fixed[-1] == pytest.approx(0.0)
    assert best.best_fixed == result.best_fixed
    np.testing.assert_allclose(result.regret_vs_best_fixed + best.regret, result.regret)
    assert replay_random(stream).propensities[0] == 0.5
    assert replay_fixed(stream, "small").shares() == {"small": 1.0, "large": 0.0}
    summary = result.summary()
    assert summary["steps"] == 300 and set(summary["shares"]) == {"small", "large"}


def test_deterministic_under_seed_and_cold_start():
    ds = contextual(300)
    runs = [replay(EpsilonGreedyRouter(seed=4), ds, lam=1.0, seed=2) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].arms, runs[1].arms)
    np.testing.assert_array_equal(runs[0].rows, runs[1].rows)
    other = replay(EpsilonGreedyRouter(seed=4), ds, lam=1.0, seed=3)
    assert not np.array_equal(other.rows, runs[0].rows)
    batched = replay(EpsilonGreedyRouter(seed=4), ds, lam=1.0, seed=2, batch_size=50)  # feedback every 50
    assert batched.arms.shape == (300,) and not np.array_equal(batched.arms, runs[0].arms)
    with pytest.raises(InvalidInputError):
        replay(EpsilonGreedyRouter(), ds, lam=1.0, batch_size=0)


def test_unknown_outcomes_are_dropped_and_errors():
    ds = contextual(50)
    ds.quality[:5, 1] = np.nan
    stream = make_stream(ds, lam=0.0)
    assert len(stream) == 45 and stream.n_dropped == 5
    with pytest.raises(InvalidInputError):
        make_stream(ds, lam=0.0, n=46)
    with pytest.raises(InvalidInputError):
        make_stream(ds, lam=-1.0)
    with pytest.raises(InvalidInputError, match="no outcomes"):
        replay(EpsilonGreedyRouter().start(["small", "other"], [0.0, 0.0]), ds, lam=0.0)


def test_contextual_bandit_beats_context_free_and_always_best():
    ds = contextual(1500)
    stream = make_stream(ds, lam=50.0, seed=0)
    linucb = replay(LinUCBRouter(featurizer=PrecomputedFeaturizer(EMB)), stream)
    greedy = replay(EpsilonGreedyRouter(), stream)
    lri = replay(LinearRewardInactionRouter(), stream)
    best = replay_fixed(stream)
    assert linucb.regret[-1] < greedy.regret[-1] and linucb.regret[-1] < best.regret[-1]
    assert linucb.regret[-1] < lri.regret[-1]
    assert linucb.regret_vs_best_fixed[-1] < -100  # it beats the best single model by a wide margin


def test_replay_logs_feed_off_policy_evaluation():
    ds = contextual(2000, seed=3)
    stream = make_stream(ds, lam=0.0, seed=0)
    logger = replay(EpsilonGreedyRouter(epsilon=0.5, seed=1), stream)
    logs = logger.to_logs(ds.subset(stream.rows).embeddings)
    target = LinUCBRouter(featurizer=PrecomputedFeaturizer(EMB)).fit(ds)  # greedy contextual policy
    report = evaluate_policy(logs, target)
    chosen = target.route_indices(ds.subset(stream.rows).embeddings)
    truth = float(stream.rewards[np.arange(len(stream)), chosen].mean())
    assert abs(report.dr.value - truth) < 3 * report.dr.std_error + 0.02
    assert report.dr.value > logger.rewards.mean() + 0.1


def test_docstring_example():
    result = doctest.testmod(replay_module)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.slow
def test_routellm_mmlu_linucb_regret_below_epsilon_greedy_and_always_best(shared_data: Path):
    """The issue's target on real data (MiniLM vectors from the user's embedding cache; no re-embedding)."""
    from rag_routing.embeddings import EmbeddingCache
    from rag_routing.evaluation.loaders import load_routellm

    cache_file = Path.home() / ".cache" / "rag_routing" / "embeddings.sqlite"
    if not cache_file.exists():
        pytest.skip(f"no embedding cache at {cache_file}; run benchmarks/online.py once to fill it")
    ds = load_routellm(shared_data / "routellm" / "mmlu" / "responses")
    vectors = EmbeddingCache(cache_file).get_many("all-MiniLM-L6-v2", ds.queries)
    keep = np.flatnonzero([v is not None for v in vectors])
    if keep.size < 10_000:
        pytest.skip(f"only {keep.size} MMLU prompts have cached MiniLM vectors; run benchmarks/online.py")
    ds = ds.subset(keep).with_embeddings(np.vstack([vectors[i] for i in keep]), "all-MiniLM-L6-v2")
    order = np.random.default_rng(0).permutation(len(ds))
    history, stream_set = ds.subset(order[5000:]), ds.subset(order[:5000])
    stream = make_stream(stream_set, lam=100.0, n=5000, seed=0)
    linucb = LinUCBRouter(featurizer=PrecomputedFeaturizer("all-MiniLM-L6-v2"), lam=100.0)
    linucb.start(ds.candidates, ds.mean_cost(), history)
    greedy = EpsilonGreedyRouter(lam=100.0).start(ds.candidates, ds.mean_cost())
    r_linucb, r_greedy, r_best = replay(linucb, stream), replay(greedy, stream), replay_fixed(stream)
    assert r_linucb.regret[-1] < r_greedy.regret[-1] and r_linucb.regret[-1] < r_best.regret[-1]
