"""SemanticRouter and bootstrap_utterances: hybrid scoring, thresholds, no-route, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers import registry
from rag_routing.routers.base import load_router
from rag_routing.routers.semantic import Route, SemanticRouter, bootstrap_utterances, routes_from_descriptions

ROUTES = [
    {"name": "maths", "candidate": "large",
     "utterances": ["solve the integral of x", "compute the derivative of sin", "integral of x squared"]},
    {"name": "chat", "candidate": "small",
     "utterances": ["hello how are you doing", "good morning friend", "hello friend nice day"]},
]


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(registry._BUILTIN, "semantic", "rag_routing.routers.semantic:SemanticRouter")


@pytest.fixture
def labelled(toy_dataset) -> RoutingDataset:
    """The toy set with route labels; the last 5 chat queries are labelled 'no route'."""
    meta = [{"task": m["task"], "route": "maths" if m["task"] == "math" else "chat"} for m in toy_dataset.metadata]
    for m in meta[-5:]:
        m["route"] = None
    return RoutingDataset(toy_dataset.queries, toy_dataset.candidates, toy_dataset.quality, toy_dataset.cost,
                          metadata=meta)


def fresh(**params) -> SemanticRouter:
    return SemanticRouter(routes=ROUTES, featurizer="tfidf", **params)


def test_routes_by_utterances_and_shapes(toy_dataset):
    router = fresh(fit_thresholds=False, threshold=0.3).fit(toy_dataset)
    queries = ["solve the integral of x^9 times sin(x) dx", "hello, how are you doing today friend", "qqq zzz"]
    S = router.predict_quality(queries)
    assert S.shape == (3, 2)
    assert router.match(queries) == ["maths", "chat", None]
    assert np.array_equal(S[:2], [[0.0, 1.0], [1.0, 0.0]])
    assert np.allclose(S[2], toy_dataset.mean_quality())  # no route: mean quality, the best single model wins
    decisions = router.route(queries)
    assert [d.metadata["semantic_route"] for d in decisions] == ["maths", "chat", None]
    assert decisions[2].reason.startswith("no route")


def test_no_route_candidate(toy_dataset):
    router = fresh(fit_thresholds=False, threshold=0.3, no_route="small").fit(toy_dataset)
    assert router.route_one("qqq zzz").candidate == "small"


def test_thresholds_fitted_on_labels(labelled):
    router = fresh(threshold=0.0).fit(labelled)
    assert router.thresholds_.shape == (2,) and (router.thresholds_ > 0).all()
    chosen = router.match(labelled)
    assert chosen[:20] == ["maths"] * 20
    router.fit_thresholds_to(["solve the integral of x", "good morning friend", "qqq"], ["maths", None, None])
    with pytest.raises(InvalidInputError, match="unknown route labels"):
        router.fit_thresholds_to(["x"], ["poetry"])


def test_alpha_zero_is_bm25_only_and_features_are_dense_only(toy_dataset):
    router = fresh(alpha=0.0, top_k=1, fit_thresholds=False, threshold=0.5).fit(toy_dataset)
    assert router.match(["derivative please"]) == ["maths"]
    dense = fresh(alpha=1.0, fit_thresholds=False, threshold=-1.0).fit(toy_dataset)
    F = dense.features(["hello friend", "integral of x"])
    assert dense.match(F) == dense.match(["hello friend", "integral of x"]) == ["chat", "maths"]
    assert dense.predict_quality(F).shape == (2, 2)  # a feature matrix has no text: the dense score alone


def test_routes_built_from_outcomes(toy_dataset):
    router = SemanticRouter(featurizer="tfidf", max_utterances=8, threshold=0.0).fit(toy_dataset)
    assert router.route_names_ == ["small", "large"]
    assert [len(r.utterances) for r in router._routes] == [8, 8]
    chosen = router.route_indices(["solve the integral of x^42 times sin(x) dx", "hello, how are you doing today"])
    assert chosen.tolist() == [1, 0]


@pytest.mark.parametrize("scorer", ["similarity", "classifier"])
def test_save_load_round_trip_and_determinism(tmp_path, labelled, scorer):
    router = fresh(scorer=scorer, lam=2.0).fit(labelled)
    loaded = load_router(router.save(tmp_path / "semantic.npz"))
    assert isinstance(loaded, SemanticRouter) and loaded.scorer == scorer
    queries = ["integral of x cubed", "hello there friend", "what a day"]
    assert np.array_equal(loaded.predict_quality(queries), router.predict_quality(queries))
    assert loaded.match(queries) == router.match(queries)
    again = fresh(scorer=scorer, lam=2.0).fit(labelled)
    assert np.array_equal(again.thresholds_, router.thresholds_)


def test_errors(toy_dataset):
    with pytest.raises(NotFittedError):
        fresh().predict_quality(["x"])
    with pytest.raises(InvalidInputError, match="unknown candidate"):
        SemanticRouter(routes=[{"name": "x", "utterances": ["a b"], "candidate": "gpt-9"}],
                       featurizer="tfidf").fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="unique"):
        SemanticRouter(routes=[ROUTES[0], ROUTES[0]])
    with pytest.raises(InvalidInputError, match="route 0"):
        SemanticRouter(routes=[{"name": "x", "utterances": ["  "]}])
    with pytest.raises(InvalidInputError, match="alpha"):
        SemanticRouter(alpha=1.5)
    with pytest.raises(InvalidInputError, match="no_route"):
        fresh(no_route="medium").fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="two routes"):
        SemanticRouter(routes=ROUTES[:1], featurizer="tfidf", scorer="classifier").fit(toy_dataset)


class _FakeLocalLLM:
    """Stands in for LocalLLM: ``generate`` returns an object with ``.text``."""

    def __init__(self, batches):
        self.batches, self.calls = list(batches), 0

    def generate(self, prompt):
        self.calls += 1
        return type("Generation", (), {"text": self.batches.pop(0) if self.batches else ""})()


class _FakeChatModel:
    """Stands in for a LangChain chat model: ``invoke`` returns a message with ``.content``."""

    def invoke(self, prompt):
        return type("AIMessage", (), {"content": "1) Translate this to French\n2) how do I say hi in Spanish"})()


def test_bootstrap_dedups_and_asks_again():
    llm = _FakeLocalLLM(["1. Solve x+1=2\n- solve X+1=2\n\n* factor x^2-1", "3) integrate x dx\n(4) factor x^2-1"])
    got = bootstrap_utterances("algebra and calculus exercises", llm, n=3)
    assert got == ["Solve x+1=2", "factor x^2-1", "integrate x dx"] and llm.calls == 2
    assert bootstrap_utterances("translation requests", _FakeChatModel(), n=5, max_rounds=1) == [
        "Translate this to French", "how do I say hi in Spanish"]
    with pytest.raises(InvalidInputError, match="generate"):
        bootstrap_utterances("x", object())
    with pytest.raises(InvalidInputError, match="non-empty"):
        bootstrap_utterances(" ", _FakeChatModel())


def test_bootstrapped_routes_train_a_classifier(toy_dataset):
    def fake(prompt: str) -> str:
        if "maths" in prompt:
            return "solve the integral of x\ncompute the derivative of sin\nintegral of x squared times sin"
        return "hello how are you doing\ngood morning friend\nhello friend how are you today"

    routes = routes_from_descriptions({"maths": ("maths homework", "large"), "chat": ("small talk", "small")},
                                      fake, n=3)
    assert all(isinstance(r, Route) and len(r.utterances) == 3 for r in routes)
    router = SemanticRouter(routes=routes, featurizer="tfidf", scorer="classifier", threshold=0.3).fit(toy_dataset)
    assert router.match(["the integral of x^7 times sin(x) dx", "hello, how are you doing today"]) == ["maths", "chat"]


@pytest.mark.slow
def test_minilm_semantic_routes(toy_dataset):
    router = SemanticRouter(routes=ROUTES, featurizer="minilm", threshold=0.3, fit_thresholds=False).fit(toy_dataset)
    assert router.match(["What is the antiderivative of cos(x)?", "Hey, nice to see you!"]) == ["maths", "chat"]
