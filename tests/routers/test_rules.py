"""ConditionalRouter: rule validation, first-match and priority semantics, shapes, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers import registry
from rag_routing.routers.base import load_router
from rag_routing.routers.rules import ConditionalRouter, Rule

RULES = [
    {"op": "regex", "value": r"\b(integral|derivative)\b", "route": "large"},
    {"field": "metadata.task", "op": "metadata_eq", "value": "code", "route": "large", "priority": 5},
    {"op": "len_gt", "value": 60, "route": "large"},
    {"op": "contains", "value": "HELLO", "route": "small", "priority": 9},
]


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """The lead wires the built-in table; tests register the name themselves so load() finds the class."""
    monkeypatch.setitem(registry._BUILTIN, "rules", "rag_routing.routers.rules:ConditionalRouter")


def test_first_match_routes_and_shapes(toy_dataset):
    router = ConditionalRouter(rules=RULES, default="small").fit(toy_dataset)
    queries = ["the integral of x", "hello, what is the derivative", "hi", "x" * 61]
    S = router.predict_quality(queries)
    assert S.shape == (4, 2) and set(np.unique(S)) <= {0.0, 1.0}
    assert router.match(queries) == [0, 0, None, 2]
    assert [d.candidate for d in router.route(queries)] == ["large", "large", "small", "large"]


def test_priority_mode_prefers_higher_priority():
    router = ConditionalRouter(rules=RULES, mode="priority")
    ds = RoutingDataset(["hello, what is the derivative"], ["small", "large"], [[1, 1]], [[0.001, 0.02]])
    assert router.fit(ds).match(["hello, what is the derivative"]) == [3]


def test_metadata_rules_read_dataset_metadata(toy_dataset):
    router = ConditionalRouter(rules=[{"field": "metadata.task", "op": "metadata_eq", "value": "math",
                                       "route": "large"}], default="small").fit(toy_dataset)
    chosen = router.route_indices(toy_dataset)
    assert chosen.tolist() == [1] * 20 + [0] * 20
    assert router.match(["anything"], metadata=[{"task": "math"}]) == [0]
    assert router.match(["anything"]) == [None]  # plain strings carry no metadata


def test_no_default_uses_mean_quality(toy_dataset):
    router = ConditionalRouter(rules=RULES).fit(toy_dataset)
    S = router.predict_quality(["just chatting"])
    assert np.allclose(S[0], toy_dataset.mean_quality())
    assert router.route_one("just chatting").candidate == "large"  # best on average


def test_save_load_round_trip_and_determinism(tmp_path, toy_dataset):
    router = ConditionalRouter(rules=RULES, mode="priority", default="small", lam=1.0).fit(toy_dataset)
    path = router.save(tmp_path / "rules.npz")
    loaded = load_router(path)
    assert isinstance(loaded, ConditionalRouter) and loaded.rules == router.rules and loaded.mode == "priority"
    queries = ["hello integral", "plain", "derivative please"]
    assert np.array_equal(loaded.predict_quality(queries), router.predict_quality(queries))
    assert np.array_equal(router.predict_quality(queries), router.predict_quality(queries))


@pytest.mark.parametrize("bad", [
    {"op": "eval", "value": "1", "route": "a"},
    {"op": "regex", "value": "(", "route": "a"},
    {"op": "regex", "value": "a" * 600, "route": "a"},
    {"op": "len_gt", "value": "10", "route": "a"},
    {"op": "metadata_eq", "value": 1, "route": "a"},
    {"field": "answer", "op": "contains", "value": "x", "route": "a"},
    {"op": "contains", "value": "x", "route": "a", "code": "import os"},
])
def test_invalid_rules_are_rejected(bad):
    with pytest.raises(InvalidInputError, match="rule 0"):
        ConditionalRouter(rules=[bad])


def test_errors(toy_dataset):
    with pytest.raises(NotFittedError):
        ConditionalRouter(rules=RULES).predict_quality(["x"])
    with pytest.raises(InvalidInputError, match="unknown candidate"):
        ConditionalRouter(rules=[{"op": "contains", "value": "x", "route": "gpt-9"}]).fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="default"):
        ConditionalRouter(rules=RULES, default="nope").fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="mode"):
        ConditionalRouter(rules=RULES, mode="random")
    router = ConditionalRouter(rules=RULES).fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="query text"):
        router.predict_quality(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="empty"):
        router.predict_quality([""])
    with pytest.raises(InvalidInputError, match="metadata rows"):
        router.match(["a", "b"], metadata=[{}])


def test_rule_objects_are_accepted():
    rule = Rule(op="contains", value="sql", route="large")
    assert ConditionalRouter(rules=[rule]).rules[0]["value"] == "sql"
