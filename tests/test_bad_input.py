"""Bad input everywhere (property-based): every public entry point answers with a valid result or a typed
:class:`RagRoutingError`, never a bare ValueError / TypeError / KeyError or a crash.

Decode policy: the library takes ``str``. ``bytes`` are refused with :class:`InvalidInputError` (decode them
first; the HTTP server decodes UTF-8 strictly and answers 400 otherwise). Control characters and lone
surrogates are valid ``str`` and are routed like any text.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rag_routing.decision import calibrate, decide, select
from rag_routing.errors import InvalidInputError, RagRoutingError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders import load_jsonl
from rag_routing.ledger import Budget, CostLedger, LedgerEntry
from rag_routing.routers.base import MAX_QUERY_CHARS
from rag_routing.routers.baselines import BestSingleRouter, CheapestRouter, RandomRouter
from rag_routing.routers.registry import create_router

# Deterministic in CI; set HYPOTHESIS_EXPLORE=<n examples> to search fresh inputs.
EXPLORE = int(os.environ.get("HYPOTHESIS_EXPLORE", "0"))
FAST = settings(max_examples=EXPLORE or 60, deadline=None, derandomize=not EXPLORE,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Any text at all: control characters, lone surrogates, private use, unassigned code points.
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200)
weird_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                          st.booleans(), st.none(), st.text(max_size=5), st.just(np.float32("nan")))
anything = st.one_of(weird_numbers, any_text, st.binary(max_size=20), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


# Bugs found by these tests are listed here while they are open (with the regression test at the end): an
# untyped error raised *by that function* is tolerated by the property tests; anything else fails them.
# Every bug found so far (B1-B10) is fixed, so the list is empty.
KNOWN_BUGS: dict[str, tuple[str, str]] = {
}


def _known_bug(exc: BaseException) -> str | None:
    """The known bug whose function is the innermost rag_routing frame of ``exc``'s traceback, if any."""
    import traceback

    frames = [(f.filename.replace("\\", "/"), f.name) for f in traceback.extract_tb(exc.__traceback__)]
    ours = [(file, fn) for file, fn in frames  # comprehensions count as their enclosing function
            if "/rag_routing/" in file and "/tests/" not in file and not fn.startswith("<")]
    if not ours:
        return None
    file, function = ours[-1]
    return next((bug for bug, (f, fn) in KNOWN_BUGS.items() if file.endswith(f) and fn == function), None)


def typed_or_valid(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``'s result, or ``None`` if it raised a typed RagRoutingError (anything else fails the test,
    except an untyped error from a :data:`KNOWN_BUGS` function)."""
    try:
        return fn(*args, **kwargs)
    except RagRoutingError:
        return None
    except (ValueError, TypeError, KeyError, NotImplementedError, RuntimeError) as exc:
        if _known_bug(exc) is None:
            raise
        return None


def toy() -> RoutingDataset:
    math_q = [f"solve the integral of x^{i} times sin(x) dx" for i in range(10)]
    chat_q = [f"hello, how are you doing today friend number {i}" for i in range(10)]
    return RoutingDataset(math_q + chat_q, ["small", "large"], [[0.0, 1.0]] * 10 + [[1.0, 1.0]] * 10,
                          [[0.001, 0.02]] * 20)


ROUTERS = {
    "best": BestSingleRouter().fit(toy()),
    "cheapest": CheapestRouter(budget=0.01).fit(toy()),
    "random": RandomRouter(seed=1).fit(toy()),
    "knn": create_router("knn", k=3, lam=10.0, featurizer="tfidf").fit(toy()),
}

# -- the decision rule -----------------------------------------------------------------------------------------
matrices = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
                      elements=st.floats(allow_nan=True, allow_infinity=True, width=64))


@FAST
@given(quality=matrices, cost=matrices, lam=st.floats(allow_nan=True, allow_infinity=True),
       budget=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), matrices),
       fallback=st.one_of(st.none(), st.integers(-3, 5), st.sampled_from(["a", "b", "zz"])))
def test_select_and_decide_take_any_arrays(quality, cost, lam, budget, fallback):
    names = [f"c{i}" for i in range(quality.shape[-1])] if quality.ndim else []
    chosen = typed_or_valid(select, quality, cost, lam, budget, fallback, names)
    if chosen is not None:
        assert chosen.ndim == 1 and ((chosen >= 0) & (chosen < np.atleast_2d(quality).shape[1])).all()
        rows = np.atleast_2d(quality).shape[0]
        if not (isinstance(budget, np.ndarray) and budget.size not in (1, rows)):  # B9: silently broadcast
            assert len(chosen) == rows
    decisions = typed_or_valid(decide, quality, cost, names, lam, budget, fallback)
    if decisions is not None:
        assert all(d.candidate in names for d in decisions)


@FAST
@given(quality=matrices, cost=matrices, share=st.floats(allow_nan=True, allow_infinity=True))
def test_calibrate_takes_any_arrays(quality, cost, share):
    lam = typed_or_valid(calibrate, quality, cost, share, max_iter=20)
    assert lam is None or (math.isfinite(lam) and lam >= 0)


@pytest.mark.parametrize("ragged", [[[1.0, 2.0], [3.0]], [["a", "b"]], [[None, 1.0]], "text", {"a": 1}])
def test_select_refuses_ragged_or_non_numeric_input(ragged):
    typed_or_valid(select, ragged, [[0.1, 0.2]])


# -- datasets --------------------------------------------------------------------------------------------------
@FAST
@given(queries=st.lists(any_text, max_size=4), candidates=st.lists(st.one_of(any_text, st.integers()), max_size=3),
       quality=matrices, cost=matrices)
def test_routing_dataset_validates_everything(queries, candidates, quality, cost):
    ds = typed_or_valid(RoutingDataset, queries, candidates, quality, cost)
    if ds is not None:
        assert ds.quality.shape == ds.cost.shape == (len(ds.queries), len(ds.candidates))


# -- routers ---------------------------------------------------------------------------------------------------
@FAST
@given(name=st.sampled_from(sorted(ROUTERS)), query=st.one_of(any_text, anything),
       lam=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_routers_route_any_query_or_refuse_it(name, query, lam):
    router = ROUTERS[name]
    for given_input in (query, [query]):
        decisions = typed_or_valid(router.route, given_input, lam)
        if decisions is not None:
            expected = 1 if isinstance(given_input, str) else len(list(given_input))  # b"" is an empty batch (B4)
            assert len(decisions) == expected and all(d.candidate in router.candidates_ for d in decisions)


@pytest.mark.parametrize("name", sorted(ROUTERS))
@pytest.mark.parametrize("bad", [b"caf\xe9", [b"\xff\xfe"], "", ["   \n\t"], ["x" * (MAX_QUERY_CHARS + 1)], [None],
                                 [1.5], [["nested"]]], ids=["bytes", "bytes-in-list", "empty", "blank", "huge",
                                                            "none", "float", "nested"])
def test_bytes_empty_and_huge_queries_are_typed_errors(name, bad):
    with pytest.raises(InvalidInputError):
        ROUTERS[name].route(bad)


def test_control_characters_and_lone_surrogates_are_routed_like_any_text():
    text = "\x00\x07 hello\u202e\ud800 friend \U0010ffff\r\n\x1b[31m"
    for router in ROUTERS.values():
        assert router.route_one(text).candidate in ("small", "large")


@pytest.mark.parametrize("name", sorted(set(ROUTERS) - {"knn"}))
def test_an_empty_batch_is_an_empty_answer(name):
    assert ROUTERS[name].route([]) == [] and ROUTERS[name].route_indices([]).tolist() == []


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_unknown_candidates_are_typed_errors(name):
    router = ROUTERS[name]
    with pytest.raises(RagRoutingError):
        router.score(["hello"], strong="gpt-17")
    params = {**router.get_params(), "fallback": "gpt-17", "budget": 0.0}
    if router.uses_features:
        params["featurizer"] = "tfidf"
    with pytest.raises(RagRoutingError):
        type(router)(**params).fit(toy()).route(["hello"])


# -- the JSONL loader ------------------------------------------------------------------------------------------
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
                                     st.integers(-10**20, 10**20), any_text),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=12)
outcome = st.fixed_dictionaries({}, optional={"quality": json_values, "cost_usd": json_values,
                                              "response": json_values})
jsonl_item = st.one_of(json_values, st.fixed_dictionaries(
    {"query": st.one_of(any_text, json_values), "outcomes": st.one_of(
        st.dictionaries(st.sampled_from(["small", "large", ""]), st.one_of(outcome, json_values), max_size=3),
        json_values)}, optional={"meta": json_values}))


@FAST
@given(lines=st.lists(st.one_of(jsonl_item.map(lambda v: json.dumps(v)), any_text), min_size=0, max_size=4),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_jsonl_loader_parses_any_line_or_names_it(lines, raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        data = "\n".join(lines).encode("utf-8", "surrogatepass") if raw is None else raw
        path.write_bytes(data)
        ds = typed_or_valid(load_jsonl, path)
        if ds is not None:
            assert len(ds) >= 1 and ds.quality.shape == (len(ds), len(ds.candidates))


# -- the ledger and budgets ------------------------------------------------------------------------------------
@FAST
@given(stage=anything, component=anything, tokens=weird_numbers, cost=weird_numbers, seconds=weird_numbers,
       energy=weird_numbers, metadata=st.one_of(st.none(), anything))
def test_ledger_record_takes_anything_and_keeps_valid_totals(stage, component, tokens, cost, seconds, energy,
                                                             metadata):
    ledger = CostLedger()
    ledger.record("generate", "ok", cost_usd=0.5)
    entry = typed_or_valid(ledger.record, stage, component, input_tokens=tokens, cost_usd=cost, seconds=seconds,
                           energy_kwh=energy, metadata=metadata if isinstance(metadata, dict) or metadata is None
                           else {"value": metadata})
    totals = ledger.totals()
    assert math.isfinite(totals["cost_usd"]) and totals["cost_usd"] >= 0.5
    assert len(ledger) == (2 if entry is not None else 1)  # a refused entry leaves nothing behind


@FAST
@given(data=st.dictionaries(st.sampled_from(["stage", "component", "input_tokens", "cost_usd", "seconds",
                                             "metadata", "energy_kwh", "bogus", "entry_id", "timestamp"]),
                            anything, max_size=6))
def test_ledger_entry_from_dict_validates(data):
    typed_or_valid(LedgerEntry.from_dict, data)


@FAST
@given(limits=st.lists(weird_numbers, min_size=4, max_size=4), wanted=st.lists(weird_numbers, min_size=4, max_size=4))
def test_budget_limits_and_reservations_are_validated(limits, wanted):
    budget = typed_or_valid(Budget, *limits)
    if budget is None:
        return
    reservation = typed_or_valid(budget.reserve, *wanted)
    if reservation is not None:
        typed_or_valid(reservation.commit, usd=wanted[0])
    spent, reserved = budget.spent(), budget.reserved()
    assert all(math.isfinite(v) and v >= 0 for v in (*spent.as_tuple(), *reserved.as_tuple()))


# -- bandits: NaN or missing outcomes, unknown decisions -------------------------------------------------------
bandits = pytest.importorskip("rag_routing.routers.bandits")


@FAST
@given(reward=weird_numbers, quality=weird_numbers, cost=weird_numbers, decision_id=st.one_of(any_text, anything))
def test_bandit_feedback_is_validated(reward, quality, cost, decision_id):
    router = bandits.EpsilonGreedyRouter(epsilon=0.2, lam=1.0).start(["small", "large"], cost=[0.01, 0.2])
    before = router.predict_quality(["q"]).copy()
    decision = router.route(["q"])[0]
    kwargs = {"reward": reward} if reward is not None else {"quality": quality, "cost": cost}
    learned = typed_or_valid(router.update, decision.decision_id, **kwargs)
    after = router.predict_quality(["q"])
    assert np.isfinite(after).all()
    if learned is None:
        assert np.array_equal(before, after)  # refused feedback changes nothing
    assume(decision_id != decision.decision_id)
    typed_or_valid(router.update, decision_id, reward=1.0)


# -- regression tests of the bugs these tests found (B1-B10, all fixed) ------------------------------------------
def test_b1_cost_row_of_another_width():
    with pytest.raises(InvalidInputError):
        select([[0.0], [0.0]], [0.0, 0.0])


def test_b2_ragged_matrix():
    with pytest.raises(InvalidInputError):
        select([[1.0, 2.0], [3.0]], [[0.1, 0.2]])


def test_b3_calibrate_on_no_rows():
    with pytest.raises(InvalidInputError):
        calibrate(np.zeros((0, 2)), np.zeros((0, 2)), 0.5)


@pytest.mark.parametrize("bad", [None, 42, b""])
def test_b4_non_iterable_queries(bad):
    with pytest.raises(InvalidInputError):
        ROUTERS["best"].route(bad)


def test_b5_empty_batch_on_a_tfidf_router():
    assert ROUTERS["knn"].route([]) == []


@pytest.mark.parametrize("budget", [np.zeros((0, 0)), np.zeros(3), np.zeros((2, 2))])
def test_b9_budget_of_the_wrong_shape(budget):
    with pytest.raises(InvalidInputError):
        select([[0.0, 0.0]], [[0.0, 0.0]], 0.0, budget)


def test_b6_non_numeric_reward():
    router = bandits.EpsilonGreedyRouter().start(["small", "large"], cost=[0.01, 0.2])
    with pytest.raises(InvalidInputError):
        router.update(router.route(["q"])[0].decision_id, reward="high")


def test_b7_unhashable_decision_id():
    router = bandits.EpsilonGreedyRouter().start(["small", "large"], cost=[0.01, 0.2])
    with pytest.raises(InvalidInputError):
        router.update(["not", "an", "id"], reward=1.0)
