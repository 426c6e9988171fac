"""Active samplers: only unlabelled cells, deterministic under a seed, a cold start per candidate, the decision
value on known cases, the posteriors, and — on a synthetic routing problem — active beats random."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.active_sampling import (
    DecisionValueSampler,
    RandomSampler,
    UncertaintySampler,
    decision_value,
    make_sampler,
)
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.quality_posterior import BootstrapPosterior, NeighbourPosterior
from rag_routing.evaluation.scorecard import Reference, evaluate_router
from rag_routing.routers.similarity import KNNRouter

FEATURES = "synthetic"


def routing_problem(seed: int, n: int = 1200, d: int = 16, k: int = 24) -> tuple[RoutingDataset, RoutingDataset]:
    """Clustered queries; a cheap model right on half the clusters, a mid one on another half, a dear one
    almost always, and nine dominated models (dear and mostly wrong). Outcomes are Bernoulli draws."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    cluster = rng.integers(0, k, n)
    X = centres[cluster] + 0.3 * rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    m = 12
    cost = np.array([0.1, 0.4, 1.0, *np.linspace(0.3, 0.9, m - 3)])
    p = np.empty((n, m))
    p[:, 0] = np.where(np.isin(cluster, rng.permutation(k)[: k // 2]), 0.9, 0.2)
    p[:, 1] = np.where(np.isin(cluster, rng.permutation(k)[: k // 2]), 0.9, 0.4)
    p[:, 2] = 0.95
    p[:, 3:] = rng.uniform(0.05, 0.4, size=(k, m - 3))[cluster]
    quality = (rng.random((n, m)) < p).astype(float)
    data = RoutingDataset([f"q{i}" for i in range(n)], [f"m{j}" for j in range(m)], quality, np.tile(cost, (n, 1)))
    data = data.with_embeddings(X.astype(np.float32), FEATURES)
    return data.subset(np.arange(n // 2)), data.subset(np.arange(n // 2, n))


def hidden(data: RoutingDataset) -> RoutingDataset:
    return replace(data, quality=np.full(data.quality.shape, np.nan), cost=np.full(data.cost.shape, np.nan))


def reveal(oracle: RoutingDataset, table: RoutingDataset, cells: list[tuple[int, int]]) -> RoutingDataset:
    quality, cost = table.quality.copy(), table.cost.copy()
    for i, j in cells:
        quality[i, j], cost[i, j] = oracle.quality[i, j], oracle.cost[i, j]
    return replace(table, quality=quality, cost=cost)


def grow(oracle: RoutingDataset, sampler, budget: int, batch: int = 25) -> RoutingDataset:
    table = hidden(oracle)
    while (labelled := int((~np.isnan(table.quality)).sum())) < budget:
        table = reveal(oracle, table, sampler.next_batch(table, min(batch, budget - labelled)))
    return table


def test_samplers_pick_only_unlabelled_cells_and_respect_exclude():
    oracle, _ = routing_problem(0, n=200)
    table = reveal(oracle, hidden(oracle), [(i, j) for i in range(0, 100, 3) for j in range(12)])
    exclude = np.zeros(table.quality.shape, dtype=bool)
    exclude[:, 4] = True
    for sampler in (RandomSampler(seed=1), UncertaintySampler(seed=1), DecisionValueSampler(seed=1)):
        batch = sampler.next_batch(table, 40, exclude=exclude)
        assert len(batch) == 40 == len(set(batch))
        assert all(np.isnan(table.quality[i, j]) and j != 4 for i, j in batch), sampler.name


def test_samplers_are_deterministic_under_a_seed():
    oracle, _ = routing_problem(0, n=200)
    table = reveal(oracle, hidden(oracle), [(i, j) for i in range(0, 100, 4) for j in range(12)])
    for name in ("random", "uncertainty", "decision_value"):
        assert make_sampler(name, seed=3).next_batch(table, 30) == make_sampler(name, seed=3).next_batch(table, 30)
    assert RandomSampler(seed=3).next_batch(table, 30) != RandomSampler(seed=4).next_batch(table, 30)


def test_cold_start_gives_every_candidate_labels_and_the_last_cells_are_returned():
    oracle, _ = routing_problem(0, n=40)
    table = hidden(oracle)
    batch = DecisionValueSampler(seed=0, min_per_candidate=2).next_batch(table, 30)
    assert np.bincount([j for _, j in batch], minlength=12).min() >= 2   # no posterior call on an empty table
    everything = np.ones(table.quality.shape, dtype=bool)
    everything[3, 5] = False
    table = replace(table, quality=np.where(everything, oracle.quality, np.nan))
    assert DecisionValueSampler(seed=0).next_batch(table, 10) == [(3, 5)]
    assert RandomSampler().next_batch(replace(table, quality=oracle.quality), 10) == []


def test_sampler_arguments_are_checked():
    oracle, _ = routing_problem(0, n=40)
    with pytest.raises(InvalidInputError, match="n must be"):
        RandomSampler().next_batch(oracle, 0)
    with pytest.raises(InvalidInputError, match="exclude"):
        RandomSampler().next_batch(oracle, 3, exclude=np.zeros((2, 2), dtype=bool))
    with pytest.raises(InvalidInputError, match="unknown sampler"):
        make_sampler("greedy")
    with pytest.raises(InvalidInputError, match="cost_power"):
        DecisionValueSampler(cost_power=-1.0)


def test_decision_value_is_high_at_the_boundary_and_nil_when_dominated_or_certain():
    mean = np.array([[0.50, 0.52, 0.05], [0.50, 0.52, 0.05]])
    std = np.array([[0.10, 0.10, 0.10], [0.0, 0.0, 0.0]])
    value = decision_value(mean, std, np.array([1.0, 1.0, 1.0]), np.array([0.0]))
    assert value[0, 0] > 0.03 and value[0, 1] > 0.03 and value[0, 2] < 1e-4
    assert (value[1] == 0).all()                               # nothing to learn from a certain cell
    # made cheap, the third candidate is in the race at the λ where 0.52 - 0.1λ = 0.05 - 0.001λ
    cheap = decision_value(mean[:1], std[:1], np.array([0.1, 0.1, 0.001]), np.array([0.47 / 0.099]))
    assert cheap[0, 2] > 0.03 and cheap[0, 0] < cheap[0, 1]


def test_cost_aware_ranking_prefers_cheaper_labels_of_equal_value():
    oracle, _ = routing_problem(0, n=400)
    table = reveal(oracle, hidden(oracle), [(i, j) for i in range(0, 200, 2) for j in range(12)])
    plain = DecisionValueSampler(seed=0).next_batch(table, 50)
    per_usd = DecisionValueSampler(seed=0, cost_power=1.0).next_batch(table, 50)
    price = table.mean_cost()
    assert np.mean([price[j] for _, j in per_usd]) < np.mean([price[j] for _, j in plain])


def test_neighbour_posterior_is_sure_where_neighbours_are_labelled():
    oracle, _ = routing_problem(1, n=400)
    table = reveal(oracle, hidden(oracle), [(i, j) for i in range(200) for j in range(3)])
    mean, std = NeighbourPosterior(k=20).estimate(table)
    assert mean.shape == std.shape == table.quality.shape and np.isfinite(std).all()
    assert std[:, :3].mean() < std[:, 3:].mean()            # labelled candidates are better known
    assert abs(mean[:, 2].mean() - 0.95) < 0.05               # the dear model is almost always right
    with pytest.raises(InvalidInputError, match="no cell is labelled"):
        NeighbourPosterior().estimate(hidden(oracle))


def test_bootstrap_posterior_of_a_knn_committee():
    oracle, _ = routing_problem(1, n=600)
    table = reveal(oracle, hidden(oracle), [(i, j) for i in range(0, 300, 2) for j in range(12)])
    posterior = BootstrapPosterior("knn", n_members=4, router_params={"k": 10})
    mean, std = posterior.estimate(table)
    again, _ = BootstrapPosterior("knn", n_members=4, router_params={"k": 10}).estimate(table)
    assert mean.shape == table.quality.shape and (std > 0).any() and np.array_equal(mean, again)
    batch = UncertaintySampler(posterior, seed=0).next_batch(table, 10)
    assert all(np.isnan(table.quality[i, j]) for i, j in batch)


def _aiq(train: RoutingDataset, test: RoutingDataset) -> float:
    router = KNNRouter(k=20, featurizer=PrecomputedFeaturizer(FEATURES)).fit(train)
    return evaluate_router(router, test, Reference.from_test(test), n_lambdas=50).aiq


def test_decision_value_beats_random_on_a_synthetic_routing_problem():
    """450 labels of 7,200 cells: the decision-value sampler spends them on the models that can win a query;
    random spreads them over nine dominated models too. Four seeds, mean test AIQ."""
    gaps = {"random": [], "decision_value": []}
    for seed in range(4):
        train, test = routing_problem(seed)
        full = _aiq(train, test)
        for name in gaps:
            gaps[name].append(_aiq(grow(train, make_sampler(name, seed=seed), 450), test) - full)
    random_gap, active_gap = np.mean(gaps["random"]), np.mean(gaps["decision_value"])
    assert active_gap > random_gap + 0.015, gaps


def test_explore_share_draws_part_of_the_batch_outside_the_top_cells():
    oracle, _ = routing_problem(0, n=400)
    table = reveal(oracle, hidden(oracle), [(i, j) for i in range(0, 200, 2) for j in range(12)])
    greedy = DecisionValueSampler(seed=0).next_batch(table, 40)
    mixed = DecisionValueSampler(seed=0, explore=0.5).next_batch(table, 40)
    assert mixed[:20] == greedy[:20] and len(set(mixed)) == 40
    assert len(set(mixed[20:]) & set(greedy)) < 10 and all(np.isnan(table.quality[i, j]) for i, j in mixed)
    with pytest.raises(InvalidInputError, match="explore"):
        RandomSampler(explore=1.5)
