"""StageRouter: choosing (fixed / fitted router), typed errors, sync-async-batch parity, ledger attribution."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.ledger import CostLedger, current_ledger, ledger_scope
from rag_routing.routers.supervised import ClassifierRouter
from rag_routing.stages.base import StageRouter
from rag_routing.stages.state import RAGState

MATH = [f"integrate x^{i} sin x dx" for i in range(12)]
CHAT = [f"hello friend, how are you doing today {i}" for i in range(12)]


def spend(label: str, usd: float):
    def option(state: RAGState) -> RAGState:
        current_ledger().record("generation", label, input_tokens=3, output_tokens=1, cost_usd=usd)
        return state.evolve(answer=label)
    return option


def two_option_stage(**kwargs) -> StageRouter:
    return StageRouter({"small": spend("small", 0.001), "large": spend("large", 0.01)}, name="toy", **kwargs)


def fitted_router(candidates=("small", "large")) -> ClassifierRouter:
    ds = RoutingDataset(MATH + CHAT, list(candidates), np.array([[0.0, 1.0]] * 12 + [[1.0, 0.0]] * 12),
                        np.tile([0.001, 0.01], (24, 1)))
    return ClassifierRouter(mode="direct", featurizer="tfidf").fit(ds)


def test_fixed_default_and_first_option():
    assert two_option_stage().invoke("q").answer == "small"
    out = two_option_stage(default="large").invoke("q")
    assert out.answer == "large"
    step = out.trace[0]
    assert (step.stage, step.choice, step.decision) == ("toy", "large", None)
    assert "fixed option" in step.reason


def test_fitted_router_chooses_by_query():
    stage = two_option_stage(router=fitted_router())
    assert stage.invoke("integrate x^3 sin x dx").answer == "large"
    out = stage.invoke("hello friend, how are you")
    assert out.answer == "small"
    step = out.trace[0]
    assert step.decision["candidate"] == "small" and step.decision["decision_id"] == step.decision_id
    assert "maximises" in step.reason


def test_unknown_router_candidate_is_an_error_at_construction():
    with pytest.raises(UnknownCandidateError, match="not options"):
        two_option_stage(router=fitted_router(("small", "huge")))


def test_unknown_default_and_bad_options_are_errors():
    with pytest.raises(UnknownCandidateError):
        two_option_stage(default="medium")
    with pytest.raises(InvalidInputError):
        StageRouter({})
    with pytest.raises(InvalidInputError):
        StageRouter({"x": 42})


def test_unfitted_router_raises_not_fitted():
    stage = two_option_stage(router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    with pytest.raises(NotFittedError):
        stage.invoke("q")


def test_option_must_return_a_state():
    stage = StageRouter({"bad": lambda s: "oops"})
    with pytest.raises(InvalidInputError, match="must return a RAGState"):
        stage.invoke("q")


def test_fit_from_labels_and_outcomes():
    stage = two_option_stage()
    stage.fit_from_labels(MATH + CHAT, ["large"] * 12 + ["small"] * 12, router=ClassifierRouter(
        mode="direct", featurizer="tfidf"))
    assert stage.choose("integrate x^5 sin x dx").choice == "large"
    stage.fit_from_outcomes(MATH + CHAT, {"small": [0] * 12 + [1] * 12, "large": [1] * 24},
                            {"small": 0.001, "large": 0.01},
                            router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    assert stage.choose("hello friend, how are you doing").choice == "small"
    with pytest.raises(UnknownCandidateError):
        stage.fit_from_labels(["a", "b"], ["small", "medium"])


def test_sync_async_batch_agree():
    stage = two_option_stage(router=fitted_router())
    queries = ["integrate x^2 sin x dx", "hello friend", "integrate x^9 sin x dx"]
    sync = [stage.invoke(q).answer for q in queries]
    assert [asyncio.run(stage.ainvoke(q)).answer for q in queries] == sync
    assert [s.answer for s in stage.batch(queries)] == sync
    assert [s.answer for s in stage.batch(queries, max_concurrency=3)] == sync
    assert [s.answer for s in asyncio.run(stage.abatch(queries, max_concurrency=2))] == sync


def test_trace_costs_add_up_to_the_ledger_under_concurrency():
    stage = two_option_stage(router=fitted_router())
    queries = ["integrate x^2 sin x dx", "hello friend"] * 10

    async def main():
        with ledger_scope() as ledger:
            states = await stage.abatch(queries)
        return ledger, states

    ledger, states = asyncio.run(main())
    totals = ledger.totals()
    assert sum(s.trace[0].usd for s in states) == pytest.approx(totals["cost_usd"])
    assert sum(s.trace[0].calls for s in states) == totals["calls"]
    for s in states:  # each step holds exactly its own entries, stamped with its decision id
        own = [e for e in ledger.entries if e.decision_id == s.trace[0].decision_id]
        assert {e.entry_id for e in own} == set(s.trace[0].entry_ids)
        assert s.trace[0].usd == pytest.approx(0.01 if s.answer == "large" else 0.001)
    routing = ledger.breakdown("stage")["routing"]
    assert routing["calls"] == len(queries)  # the router's own decision is recorded too


def test_threads_batch_attributes_costs():
    stage = two_option_stage(default="large")
    with ledger_scope() as ledger:
        states = stage.batch(["a", "b", "c", "d"], max_concurrency=4)
    assert ledger.totals()["cost_usd"] == pytest.approx(sum(s.trace[0].usd for s in states)) == pytest.approx(0.04)


def test_nested_stages_cost_is_exclusive():
    inner = two_option_stage(default="large")

    def outer_option(state: RAGState) -> RAGState:
        current_ledger().record("judge", "outer", cost_usd=0.5)
        return inner.invoke(state)

    outer = StageRouter({"wrap": outer_option}, name="outer")
    with ledger_scope() as ledger:
        out = outer.invoke("q")
    assert [s.stage for s in out.trace] == ["outer", "toy"]  # the outer step comes first
    assert out.trace[0].usd == pytest.approx(0.5) and out.trace[1].usd == pytest.approx(0.01)
    assert out.cost()["usd"] == pytest.approx(ledger.totals()["cost_usd"])


def test_trace_has_costs_without_an_ambient_ledger():
    out = two_option_stage(default="large").invoke("q")
    assert out.trace[0].usd == pytest.approx(0.01) and out.trace[0].calls == 1


def test_async_only_option_and_async_stage():
    async def option(state: RAGState) -> RAGState:
        await asyncio.sleep(0)
        return state.evolve(answer="async")

    stage = StageRouter({"a": option})
    assert asyncio.run(stage.ainvoke("q")).answer == "async"
    assert stage.invoke("q").answer == "async"  # no running loop: run to completion

    class Both:
        def invoke(self, state):
            return state.evolve(answer="sync")

        async def ainvoke(self, state):
            return state.evolve(answer="sync")

    assert asyncio.run(StageRouter({"b": Both()}).ainvoke("q")).answer == "sync"


def test_ledger_budget_of_the_root_applies_inside_stages():
    from rag_routing.errors import BudgetExceededError
    from rag_routing.ledger import Budget

    stage = StageRouter({"call": lambda s: (current_ledger().record_call(
        stage="generation", model="gpt-4o", input_tokens=1000, output_tokens=1000), s)[1]})
    ledger = CostLedger(budget=Budget(max_usd=0.02))
    with ledger_scope(ledger):
        stage.invoke("q")
        with pytest.raises(BudgetExceededError):
            with current_ledger().guard(stage="generation", model="gpt-4o", est_input_tokens=10_000,
                                        est_output_tokens=1000):
                pass
    assert len(ledger) == 1


def test_fit_from_outcomes_of_some_options_only():
    stage = StageRouter({"small": spend("small", 0.001), "large": spend("large", 0.01),
                         "unused": spend("unused", 1.0)}, name="toy")
    stage.fit_from_outcomes(MATH + CHAT, {"small": [0] * 12 + [1] * 12, "large": [1] * 24},
                            {"small": 0.001, "large": 0.01, "unused": 1.0},
                            router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    assert stage.router.candidates_ == ["small", "large"]
    assert stage.invoke("integrate x^4 sin x dx").answer == "large"
    with pytest.raises(UnknownCandidateError):
        stage.fit_from_outcomes(["a", "b"], {"medium": [1, 0]})
