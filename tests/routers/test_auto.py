"""AutoRouter: keeps the best fixed candidate without real signal, picks a learned router with one, says why,
and round-trips through save/load."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.auto import AutoRouter
from rag_routing.routers.auto_cv import PolicyScorer, kfold
from rag_routing.routers.base import load_router
from rag_routing.routers.registry import create_router

COST = [0.001, 0.004, 0.02]


def _noise(n: int = 150, seed: int = 0) -> RoutingDataset:
    """Outcomes independent of the (random) query text: no per-query signal to find."""
    rng = np.random.default_rng(seed)
    queries = [" ".join(rng.choice(list("abcdefghij"), 6)) + f" {i}" for i in range(n)]
    quality = (rng.random((n, 3)) < [0.4, 0.6, 0.8]).astype(float)
    return RoutingDataset(queries, ["a", "b", "c"], quality, np.tile(COST, (n, 1)), name="noise")


def _signal(n: int = 150, seed: int = 0) -> RoutingDataset:
    """Arithmetic questions only the dear model answers; greetings every model answers."""
    rng = np.random.default_rng(seed)
    kinds = rng.random(n) < 0.5
    queries = [f"compute the integral of x^{i} sin x dx" if k else f"hello friend, how was your day {i}"
               for i, k in enumerate(kinds)]
    quality = np.where(kinds[:, None], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    return RoutingDataset(queries, ["a", "b", "c"], quality, np.tile(COST, (n, 1)), name="signal")


def _auto(**kwargs) -> AutoRouter:
    return AutoRouter(**{"routers": ["knn", "mf"], "featurizer": "tfidf", "n_bootstrap": 200, **kwargs})


def test_no_signal_keeps_the_best_fixed_candidate():
    router = _auto().fit(_noise())
    assert router.chosen_ == "fixed" and router.router_ is None
    explained = router.explain()
    assert explained["chosen"] == "fixed" and "kept the best fixed candidate" in explained["reason"]
    assert {r["router"] for r in explained["routers"]} == {"knn", "mf"}
    assert all(not r["significant"] for r in explained["routers"])
    # It routes like the fixed policy: the best training mean at λ = 0, the cheap one at a high λ.
    assert set(router.route_indices(["x y z"] * 3, lam=0.0).tolist()) == {2}
    assert set(router.route_indices(["x y z"], lam=1e5).tolist()) == {0}


def test_real_signal_picks_a_learned_router():
    data = _signal()
    router = _auto().fit(data)
    explained = router.explain()
    assert router.chosen_ in {"knn", "mf"} and router.router_ is not None
    winner = next(r for r in explained["routers"] if r["router"] == router.chosen_)
    assert winner["significant"] and winner["gain_low"] > 0 and winner["gain"] > 0
    assert explained["criterion"] == "aiq" and "beats the best fixed candidate" in explained["reason"]
    # Cheap model for greetings, the dear one for integrals, at a λ where it pays.
    picks = router.route(["hello friend, how was your day 999", "compute the integral of x^7 sin x dx"], lam=20.0)
    assert [d.candidate for d in picks] == ["a", "c"]


def test_save_load_round_trip(tmp_path):
    data = _signal()
    for router in (_auto().fit(data), _auto().fit(_noise())):
        path = router.save(tmp_path / f"auto_{router.chosen_}.npz")
        again = load_router(path)
        assert isinstance(again, AutoRouter) and again.chosen_ == router.chosen_
        assert again.explain() == router.explain()
        queries = data.queries[:10]
        np.testing.assert_allclose(again.predict_quality(queries), router.predict_quality(queries))


def test_registry_defaults_and_bad_settings():
    assert isinstance(create_router("auto"), AutoRouter)
    with pytest.raises(NotFittedError):
        AutoRouter().explain()
    with pytest.raises(InvalidInputError):
        AutoRouter(routers=["auto"])
    with pytest.raises(InvalidInputError):
        AutoRouter(n_folds=1)
    with pytest.raises(InvalidInputError):
        AutoRouter(criterion="accuracy")
    tiny = _noise(n=10)
    router = _auto().fit(tiny)
    assert router.chosen_ == "fixed" and "too few training queries" in router.explain()["reason"]


def test_a_router_that_fails_in_cv_is_reported_not_chosen():
    data = _signal()
    router = _auto(routers=[{"router": "classifier", "label_key": "no_such_key"}, "knn"]).fit(data)
    rows = {r["router"].split("{")[0]: r for r in router.explain()["routers"]}
    assert rows["classifier"]["error"] and router.chosen_ == "knn"


def test_two_candidates_use_apgr_and_fixed_is_half():
    data = _signal().select_candidates(["a", "c"])
    scorer = PolicyScorer(data, "apgr", kfold(len(data), 3, seed=0))
    assert scorer.fixed_score == 0.5
    perfect = scorer.score(data.quality)
    assert perfect > 0.7                                               # RouteLLM's binned curve of a 0/1 score
    router = _auto(routers=["knn"]).fit(data)
    assert router.explain()["criterion"] == "apgr" and router.chosen_ == "knn"


def test_auto_is_the_default_of_stage_routers_and_router_runnable():
    from rag_routing.stages.fitting import default_stage_router

    assert isinstance(default_stage_router(), AutoRouter)
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    from rag_routing.integrations.langchain.router_runnable import RouterRunnable

    node = RouterRunnable(runnables={c: RunnableLambda(lambda x, c=c: c) for c in ["a", "b", "c"]})
    assert isinstance(node.router, AutoRouter) and not node.router.is_fitted
    node.router.featurizer, node.router.routers = "tfidf", [{"router": "knn"}]
    assert node.fit(_noise()) is node and node.router.chosen_ == "fixed"
    assert node.invoke("x y z") == "c"                                 # the best fixed candidate at λ = 0


def test_serve_fits_auto_on_routing_data(tmp_path):
    from rag_routing.evaluation.loaders import write_jsonl
    from rag_routing.server.launch import load_or_fit_router

    data = tmp_path / "logs.jsonl"
    write_jsonl(_noise(n=12), data)
    router = load_or_fit_router(str(data))
    assert isinstance(router, AutoRouter) and router.chosen_ == "fixed"   # 12 logs: too few to trust a router
    saved = router.save(tmp_path / "auto.npz")
    assert load_or_fit_router(str(saved)).explain() == router.explain()


def test_module_examples_run():
    import doctest

    from rag_routing.routers import auto, auto_cv, baselines

    for module in (auto, auto_cv, baselines):
        assert doctest.testmod(module).failed == 0
