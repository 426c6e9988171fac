"""Bandit routers: feedback contract, persistence (A^-1 included), determinism, shared stores, behaviour."""

from __future__ import annotations

import doctest
import importlib
import threading

import numpy as np
import pytest

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import CorruptStateError, InvalidInputError, NoRouteError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.bandits import (
    EpsilonGreedyRouter,
    LinearRewardInactionRouter,
    LinUCBRouter,
    MemoryBanditStore,
    SQLiteBanditStore,
    ThompsonRouter,
    UnknownDecisionError,
)
from rag_routing.routers.base import load_router
from rag_routing.routers.registry import get_router_class, register_router

EMB = "toy"
CLASSES = {"epsilon_greedy": EpsilonGreedyRouter, "lri": LinearRewardInactionRouter, "linucb": LinUCBRouter,
           "thompson": ThompsonRouter}


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """The lead adds these to the built-in registry; until then the tests register them."""
    for name, klass in CLASSES.items():
        try:
            get_router_class(name)
        except InvalidInputError:
            register_router(name, klass)


def _unit(M: np.ndarray) -> np.ndarray:
    return (M / np.linalg.norm(M, axis=1, keepdims=True)).astype(np.float32)


def contextual(n: int = 1500, d: int = 8, seed: int = 0) -> RoutingDataset:
    """Three topics; arm t is right 90 % of the time on topic t (arm 2: 60 %) and 30 % elsewhere (arm 2: 50 %).
    Best fixed arm ~0.53 accuracy, best contextual policy ~0.8."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 3, n)
    E = _unit(np.eye(d)[topic] + 0.3 * rng.standard_normal((n, d)))
    p = np.array([[0.9, 0.3, 0.5], [0.3, 0.9, 0.5], [0.3, 0.3, 0.6]])
    Q = (rng.random((n, 3)) < p[topic]).astype(float)
    return RoutingDataset([f"q{i}" for i in range(n)], ["a", "b", "c"], Q,
                          np.full((n, 3), 0.001)).with_embeddings(E, EMB)


def make(klass, **params):
    if klass.uses_features:
        params.setdefault("featurizer", PrecomputedFeaturizer(EMB))
    return klass(**params)


def started(klass, ds: RoutingDataset, **params):
    return make(klass, **params).start(ds.candidates, ds.mean_cost(), ds)


def run(router, ds: RoutingDataset, steps: int) -> float:
    """Sequential route/update through the public API; mean quality obtained."""
    total = 0.0
    for i in range(steps):
        d = router.route(ds.embeddings[i:i + 1])[0]
        q = float(ds.quality[i, d.index])
        router.update(d.decision_id, quality=q)
        total += q
    return total / steps


@pytest.mark.parametrize("name", list(CLASSES))
def test_route_update_contract(name):
    ds = contextual(50)
    router = started(CLASSES[name], ds, lam=1.0)
    decisions = router.route(ds.embeddings[:5])
    assert len(decisions) == 5 and router.n_pending == 5
    assert router.predict_quality(ds.embeddings[:5]).shape == (5, 3)
    for d in decisions:
        assert 0 < d.metadata["propensity"] <= 1 and d.router == name and d.candidate in ds.candidates
    assert router.update(decisions[0].decision_id, reward=0.5) == 0.5
    r = router.update(decisions[1].decision_id, quality=1.0, cost=0.1)
    assert r == pytest.approx(1.0 - 1.0 * 0.1)
    with pytest.raises(UnknownDecisionError, match="already updated"):
        router.update(decisions[0].decision_id, reward=1.0)
    with pytest.raises(UnknownDecisionError, match="unknown decision"):
        router.update("nope", reward=1.0)
    with pytest.raises(InvalidInputError, match="finite"):
        router.update(decisions[2].decision_id, reward=float("nan"))
    with pytest.raises(InvalidInputError, match="either reward or quality"):
        router.update(decisions[2].decision_id, reward=1.0, quality=1.0)
    assert router.update(decisions[2].decision_id, quality=0.0) == pytest.approx(-0.001)  # predicted cost
    assert router.n_pending == 2


def test_pending_is_bounded_and_expires():
    ds = contextual(20)
    router = started(EpsilonGreedyRouter, ds, max_pending=3, pending_ttl_s=10.0)
    now = [0.0]
    router._pending.clock = lambda: now[0]
    ids = [d.decision_id for d in router.route(np.zeros((5, 1)))]
    assert router.n_pending == 3
    with pytest.raises(UnknownDecisionError, match="evicted"):
        router.update(ids[0], reward=1.0)
    now[0] = 11.0
    with pytest.raises(UnknownDecisionError, match="expired"):
        router.update(ids[-1], reward=1.0)


def test_errors():
    with pytest.raises(NotFittedError):
        LinUCBRouter().route(["hi"])
    with pytest.raises(InvalidInputError, match="needs queries"):
        LinUCBRouter().start(["a", "b"], [0.0, 0.0])
    with pytest.raises(InvalidInputError):
        EpsilonGreedyRouter(epsilon=1.5)
    with pytest.raises(InvalidInputError):
        LinearRewardInactionRouter(reward_bounds=(1.0, 0.0))
    with pytest.raises(InvalidInputError, match="lam"):
        started(EpsilonGreedyRouter, contextual(10)).act(np.zeros((1, 1)), lam=-1.0)


def test_budget_fallback_and_exploration_respect_feasibility():
    ds = RoutingDataset(["x", "y"], ["cheap", "dear"], [[0.0, 1.0]] * 2, [[0.001, 0.1]] * 2)
    router = EpsilonGreedyRouter(epsilon=1.0).fit(ds)  # always explores: still never over budget
    arms, p = router.act(np.zeros((200, 1)), budget=0.01)
    assert set(arms.tolist()) == {0} and np.allclose(p, 1.0)
    with pytest.raises(NoRouteError):
        router.route(np.zeros((1, 1)), budget=0.0)
    router.fallback = "cheap"
    assert router.route(np.zeros((1, 1)), budget=0.0)[0].fallback


@pytest.mark.parametrize("name", list(CLASSES))
def test_save_load_round_trip_and_determinism(tmp_path, name):
    ds = contextual(300)
    a = started(CLASSES[name], ds, seed=7, lam=2.0)
    arms, _ = a.act(ds.embeddings[:200])
    a.learn(ds.embeddings[:200], arms, quality=ds.quality[np.arange(200), arms])
    loaded = load_router(a.save(tmp_path / "bandit"))
    assert type(loaded) is type(a) and loaded.candidates_ == a.candidates_
    for key, value in a.state_.items():  # A^-1, b, theta, Q-values, probabilities, counts
        np.testing.assert_allclose(loaded.state_[key], value)
    X = ds.embeddings[200:260]
    np.testing.assert_allclose(loaded.predict_quality(X), a.predict_quality(X))
    np.testing.assert_array_equal(loaded.act(X)[0], a.act(X)[0])  # the random stream continues identically
    b = started(CLASSES[name], ds, seed=7, lam=2.0)
    arms_b, _ = b.act(ds.embeddings[:200])
    np.testing.assert_array_equal(arms, arms_b)


def test_corrupt_saved_state(tmp_path):
    ds = contextual(50)
    path = started(LinUCBRouter, ds).save(tmp_path / "b.npz")
    router = started(LinUCBRouter, ds)
    with pytest.raises(CorruptStateError):
        router._set_state({"rng": {}}, {"arm.A_inv": np.zeros((2, 2)), "context.mean": np.zeros(8),
                                        "context.components": np.eye(8)})
    assert load_router(path).is_fitted


def test_sherman_morrison_matches_batch_ridge():
    ds = contextual(400)
    router = started(LinUCBRouter, ds, regularization=2.0)
    X = router._context(ds.embeddings)
    router.learn(ds.embeddings, np.zeros(400, dtype=int), rewards=ds.quality[:, 0])
    A = 2.0 * np.eye(X.shape[1]) + X.T @ X
    np.testing.assert_allclose(router.state_["A_inv"][0], np.linalg.inv(A), atol=1e-8)
    np.testing.assert_allclose(router.theta_[0], np.linalg.solve(A, X.T @ ds.quality[:, 0]), atol=1e-8)
    warm = make(LinUCBRouter, regularization=2.0).fit(ds.select_candidates(["a"]))  # batch warm start agrees
    np.testing.assert_allclose(warm.theta_[0], router.theta_[0], atol=1e-8)


def test_reward_mixes_cost_with_lambda():
    ds = RoutingDataset(["x"], ["cheap", "dear"], [[np.nan, np.nan]], [[0.01, 0.1]])
    router = EpsilonGreedyRouter(lam=5.0, epsilon=0.0).fit(ds)
    router.learn(np.zeros((2, 1)), ["cheap", "dear"], quality=[0.8, 1.0], cost=[0.01, 0.3])
    # target = quality - λ·(cost - predicted cost): the dear one cost 0.2 $ more than predicted.
    np.testing.assert_allclose(router.predict_quality(np.zeros((1, 1)))[0], [0.8, 1.0 - 5.0 * 0.2])
    assert router.route_indices(np.zeros((1, 1))).tolist() == [0]  # 0.8 - 0.05 > 0.0 - 0.5


def test_linucb_learns_context_and_beats_epsilon_greedy():
    ds = contextual(1500)
    linucb = run(started(LinUCBRouter, ds, alpha=0.5), ds, 1500)
    thompson = run(started(ThompsonRouter, ds, seed=3), ds, 1500)
    greedy = run(started(EpsilonGreedyRouter, ds, epsilon=0.1), ds, 1500)
    assert linucb > greedy + 0.1 and thompson > greedy + 0.1, (linucb, thompson, greedy)
    router = started(LinUCBRouter, ds)
    run(router, ds, 1500)
    topics = np.eye(8, dtype=np.float32)[:3]
    assert router.route_indices(topics).tolist() == [0, 1, 2]


def test_lri_and_epsilon_greedy_converge_to_best_arm():
    rng = np.random.default_rng(0)
    ds = RoutingDataset(["q"], ["a", "b", "c"], [[np.nan] * 3], [[0.0] * 3])
    lri = LinearRewardInactionRouter(learning_rate=0.05, seed=1).fit(ds)
    eps = EpsilonGreedyRouter(epsilon=0.1, seed=1).fit(ds)
    for _ in range(1500):
        for router in (lri, eps):
            arm, _ = router.act(np.zeros((1, 1)))
            router.learn(np.zeros((1, 1)), arm, rewards=(rng.random(1) < [0.2, 0.5, 0.8][arm[0]]).astype(float))
    assert lri.probabilities_[2] > 0.9
    assert eps.route_indices(np.zeros((1, 1))).tolist() == [2]


def test_warm_start_routes_well_before_any_feedback():
    ds = contextual(900)
    router = make(LinUCBRouter).fit(ds)
    assert router.route_indices(np.eye(8, dtype=np.float32)[:3]).tolist() == [0, 1, 2]
    cold = make(LinUCBRouter, warm_start=False).fit(ds)
    assert np.allclose(cold.theta_, 0.0)


def test_shared_memory_store_and_atomic_sqlite_updates(tmp_path):
    ds = contextual(100)
    store = MemoryBanditStore()
    a = started(EpsilonGreedyRouter, ds, store=store)
    b = started(EpsilonGreedyRouter, ds).use_store(store)
    d = a.route(np.zeros((1, 1)))[0]
    a.update(d.decision_id, reward=1.0)
    assert b.state_["counts"].sum() == 0 and b.predict_quality(np.zeros((1, 1)))[0, d.index] == 1.0
    sqlite = SQLiteBanditStore(tmp_path / "bandits.db")
    routers = [started(LinUCBRouter, ds).use_store(sqlite, "shared") for _ in range(3)]

    def feed(router):
        for i in range(20):
            router.learn(ds.embeddings[i:i + 1], [1], rewards=[1.0])

    threads = [threading.Thread(target=feed, args=(r,)) for r in routers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sqlite.get(routers[0].store_key)["counts"].tolist() == [0.0, 60.0, 0.0]
    assert sqlite.version(routers[0].store_key) == 61  # the first put, then 60 updates
    assert started(LinUCBRouter, ds).use_store(sqlite, "shared").state_["counts"][1] == 60
    sqlite._conn.execute("UPDATE bandit_state SET data = x'00'")
    with pytest.raises(CorruptStateError):
        routers[0].act(ds.embeddings[:1])


def test_add_and_remove_candidates():
    ds = contextual(200)
    router = started(LinUCBRouter, ds)
    pending = router.route(ds.embeddings[:20])
    router.add_candidate("d", np.ones(10), ds.embeddings[:10], cost=0.002)
    assert router.candidates_ == ["a", "b", "c", "d"] and router.state_["counts"][3] == 10
    router.remove_candidate("a")
    assert router.candidates_ == ["b", "c", "d"] and router.state_["A_inv"].shape[0] == 3
    for d in pending:  # decisions for "a" are gone; the others still update the right arm
        if d.candidate == "a":
            with pytest.raises(UnknownDecisionError):
                router.update(d.decision_id, reward=1.0)
        else:
            router.update(d.decision_id, reward=1.0)
    lri = started(LinearRewardInactionRouter, ds).add_candidate("d", cost=0.0)
    assert np.allclose(lri.probabilities_, 0.25)
    with pytest.raises(InvalidInputError):
        lri.add_candidate("d", cost=0.0)


def test_thompson_propensities_are_calibrated():
    ds = contextual(60)
    router = started(ThompsonRouter, ds, scale=5.0, n_propensity_samples=400, seed=0)
    x = np.repeat(ds.embeddings[:1], 2000, axis=0)
    arms, p = router.act(x)
    for arm in range(3):
        share = (arms == arm).mean()
        assert abs(p[arms == arm].mean() - share) < 0.05


@pytest.mark.parametrize("module", ["rag_routing.routers.bandits.store", "rag_routing.routers.bandits.feedback",
                                    "rag_routing.routers.bandits.context_free", "rag_routing.routers.bandits.linear"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
