"""SessionRouter: no ping-pong on noisy turns, a switch on a real topic change, budgets, history, LRU/TTL."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pytest

import rag_routing.session as session_module
from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError, NoRouteError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router
from rag_routing.session import SessionRouter


class LinearStub(Router):
    """Quality = features @ W: candidate A scores the first feature, B the second."""

    name = "stub"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)

    def _fit(self, features, dataset):
        pass

    def _predict_quality(self, features, X):
        return np.asarray(features, dtype=np.float64) @ np.array([[1.0, 0.0], [0.0, 1.0]])


class TextStub(Router):
    """Reads text: B's quality is the number of times 'code' appears in the input."""

    name = "text_stub"
    uses_features = False

    def _fit(self, features, dataset):
        pass

    def _predict_quality(self, features, X):
        texts = [X] if isinstance(X, str) else list(X)
        return np.array([[0.5, 0.3 * t.count("code")] for t in texts])


def fitted(router: Router, cost=(0.0, 0.0)) -> Router:
    E = np.eye(2, dtype=np.float32)
    ds = RoutingDataset(["a", "b"], ["A", "B"], [[1, 0], [0, 1]], [list(cost)] * 2).with_embeddings(E, "toy")
    return router.fit(ds)


def stub(**kwargs) -> Router:
    return fitted(LinearStub(featurizer=PrecomputedFeaturizer("toy"), **kwargs))


def noisy_turns(n: int, topic: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [topic + 0.25 * rng.standard_normal(2) for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_noisy_turns_do_not_ping_pong(seed):
    turns = noisy_turns(40, np.array([1.0, 0.95]), seed=seed)  # A and B score about the same every turn
    eager = SessionRouter(stub(), stickiness=0.0, hysteresis=0.0, history_turns=0, topic_shift=0.0)
    calm = SessionRouter(stub(), stickiness=0.7, hysteresis=0.15)
    eager_choices = [eager.route("t", "s", features=t).candidate for t in turns]
    for t in turns:
        calm.route("t", "s", features=t)
    assert eager.stats("s").switches >= 8 and len(set(eager_choices)) == 2  # the per-turn scores are noisy
    assert calm.stats("s").switches <= 2


def test_clear_topic_change_switches_at_once():
    session = SessionRouter(stub(), stickiness=0.5, hysteresis=0.1)
    for t in noisy_turns(10, np.array([1.0, 0.1]), seed=1):
        assert session.route("t", "s", features=t).candidate == "A"
    decision = session.route("t", "s", features=np.array([0.05, 1.0]))
    assert decision.candidate == "B"
    info = decision.metadata["session"]
    assert info["switched"] and info["topic_shift"] and info["previous"] == "A" and info["turn"] == 11
    assert session.stats("s").switches == 1 and session.stats("s").current == "B"


def test_sticky_decisions_are_reported():
    session = SessionRouter(stub(), stickiness=0.0, hysteresis=0.3, topic_shift=0.0)
    session.route("t", "s", features=np.array([1.0, 0.8]))
    decision = session.route("t", "s", features=np.array([0.8, 1.0]))
    assert decision.candidate == "A" and decision.metadata["session"]["sticky"]
    assert "kept" in decision.reason


def test_budget_forces_a_switch():
    router = fitted(LinearStub(featurizer=PrecomputedFeaturizer("toy")), cost=(0.01, 0.001))
    session = SessionRouter(router, hysteresis=1.0)
    assert session.route("t", "s", features=np.array([1.0, 0.2])).candidate == "A"
    decision = session.route("t", "s", features=np.array([1.0, 0.2]), budget=0.005)
    assert decision.candidate == "B" and "budget" in decision.reason
    with pytest.raises(NoRouteError):
        session.route("t", "s", features=np.array([1.0, 0.2]), budget=0.0)


def test_history_shapes_the_router_input():
    router = fitted(TextStub())
    session = SessionRouter(router, history_turns=2)
    assert session.route("and now?").candidate == "A"
    assert session.route("and now?", history=["write code", "more code please"]).candidate == "B"
    s = SessionRouter(router, hysteresis=0.0, stickiness=0.0)
    for turn in ["fix my code", "the code fails", "why?"]:
        last = s.route(turn, "chat")
    assert last.candidate == "B"  # 'why?' alone says nothing; the conversation says code


def test_sessions_are_bounded_and_expire():
    now = [0.0]
    session = SessionRouter(stub(), max_sessions=2, ttl_s=10.0, clock=lambda: now[0])
    for sid in ("a", "b", "c"):
        session.route("t", sid, features=np.array([1.0, 0.0]))
    assert session.n_sessions == 2 and session.stats("a").turns == 0 and session.stats("c").turns == 1
    now[0] = 20.0
    session.route("t", "d", features=np.array([1.0, 0.0]))
    assert session.n_sessions == 1
    session.end("d")
    assert session.n_sessions == 0


def test_errors():
    with pytest.raises(InvalidInputError, match="fitted"):
        SessionRouter(LinearStub())
    with pytest.raises(InvalidInputError):
        SessionRouter(stub(), stickiness=1.0)
    with pytest.raises(InvalidInputError):
        SessionRouter(stub()).route("   ", "s")


def test_docstring_example():
    result = doctest.testmod(session_module)
    assert result.failed == 0 and result.attempted > 0
