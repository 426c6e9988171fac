"""Budgets and metering in LangGraph: a router node + conditional edge choosing between two model nodes.

The LangGraph row of the matrix (invoke, batch, stream, ainvoke, astream) × {metered with no handler attached;
refused before the call; exact totals under 8 threads / 200 asyncio tasks}; plus ``get_graph()`` of a routed
LCEL chain drawing its branches.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.graph import END, START, StateGraph  # noqa: E402

from rag_routing.errors import BudgetExceededError, InvalidInputError  # noqa: E402
from rag_routing.integrations.langchain.ambient import ambient_handler  # noqa: E402
from rag_routing.integrations.langgraph import RouteNode, add_routed_branches  # noqa: E402
from rag_routing.ledger import Budget, LedgerThreadPoolExecutor, ledger_scope  # noqa: E402
from rag_routing.stages import StageRouter  # noqa: E402
from tests.integrations.langchain_fakes import CountingChat, small_large_router  # noqa: E402
from tests.integrations.test_budget_matrix_langchain import BIG_CALL, MINI_CALL, routed_chain  # noqa: E402

PATHS = ["invoke", "batch", "stream", "ainvoke", "astream"]


class State(TypedDict, total=False):
    question: str
    answer: str
    route: dict[str, Any]


def graph(small: CountingChat, large: CountingChat) -> Any:
    def answer_with(model: CountingChat) -> Any:
        return lambda state: {"answer": model.invoke(state["question"]).content}

    builder = StateGraph(State)
    add_routed_branches(builder, "route", small_large_router(), {"small": answer_with(small),
                                                                 "large": answer_with(large)}, then=END)
    builder.add_edge(START, "route")
    return builder.compile()


def run(path: str, app: Any, questions: list[str]) -> list[dict[str, Any]]:
    inputs = [{"question": q} for q in questions]
    if path == "invoke":
        return [app.invoke(x) for x in inputs]
    if path == "batch":
        return app.batch(inputs)
    if path == "stream":
        return [list(app.stream(x, stream_mode="values"))[-1] for x in inputs]

    async def go() -> list[dict[str, Any]]:
        if path == "ainvoke":
            return [await app.ainvoke(x) for x in inputs]
        return [[s async for s in app.astream(x, stream_mode="values")][-1] for x in inputs]

    return asyncio.run(go())


@pytest.mark.parametrize("path", PATHS)
def test_langgraph_metered_with_no_handler_and_decision_in_state(path: str) -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        out = run(path, graph(small, large), ["hello there, how are you?", "integrate x squared please"])
    assert [o["route"]["candidate"] for o in out] == ["small", "large"]
    assert (small.calls, large.calls) == (1, 1)
    generation = [e for e in ledger.entries if e.stage == "generation"]
    routing = {e.metadata["choice"]: e.decision_id for e in ledger.entries if e.stage == "routing"}
    assert {e.model: e.decision_id for e in generation} == {"gpt-4o-mini": routing["small"],
                                                            "gpt-4o": routing["large"]}
    assert [o["route"]["decision_id"] for o in out] == [routing["small"], routing["large"]]
    assert ledger.totals()["cost_usd"] == pytest.approx(MINI_CALL + BIG_CALL)
    assert ambient_handler().open_runs == 0 and ledger.budget.reserved().usd == 0


@pytest.mark.parametrize("path", PATHS)
def test_langgraph_refused_before_the_call(path: str) -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o", max_tokens=1000)
    with ledger_scope(budget=Budget(max_usd=0.008)) as ledger:
        with pytest.raises(BudgetExceededError):
            run(path, graph(small, large), ["integrate x squared please"])
    assert large.calls == 0 and small.calls == 0
    assert ledger.budget.spent().usd == 0 and ledger.budget.reserved().usd == 0


def test_langgraph_router_picks_what_the_budget_left_can_pay_for() -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    with ledger_scope(budget=Budget(max_usd=0.005)):
        out = graph(small, large).invoke({"question": "integrate x squared please"})
    assert out["route"]["candidate"] == "small" and "ambient budget has left" in out["route"]["reason"]
    out = graph(small, large).invoke({"question": "integrate x squared please"},
                                     config={"configurable": {"lam": 1000.0}})
    assert out["route"]["candidate"] == "small" and out["route"]["lam"] == 1000.0


def test_langgraph_exact_totals_under_8_threads_and_200_tasks() -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    app = graph(small, large)
    with ledger_scope(budget=Budget(max_usd=10.0)) as ledger:
        with LedgerThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: app.invoke({"question": f"hello {i}"}), range(100)))

        async def go() -> None:
            await asyncio.gather(*(app.ainvoke({"question": f"hi there {i}"}) for i in range(200)))

        asyncio.run(go())
    assert small.calls == 300 and large.calls == 0
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert len(generation) == 300 and len({e.decision_id for e in generation}) == 300
    assert math.isclose(ledger.totals()["cost_usd"], 300 * MINI_CALL, rel_tol=1e-12)
    assert ambient_handler().open_runs == 0 and ledger.budget.reserved().usd == 0


def test_a_stage_router_as_a_node_and_edge() -> None:
    stage = StageRouter({"small": lambda s: s, "large": lambda s: s}, router=small_large_router(), name="gen")
    node = RouteNode(stage)
    builder = StateGraph(State)
    builder.add_node("route", node)
    builder.add_node("small", lambda s: {"answer": "S"})
    builder.add_node("large", lambda s: {"answer": "L"})
    builder.add_edge(START, "route")
    builder.add_conditional_edges("route", node.edge, node.path_map)
    builder.add_edge("small", END)
    builder.add_edge("large", END)
    app = builder.compile()
    assert app.invoke({"question": "integrate x squared"})["answer"] == "L"
    assert app.invoke({"question": "hello, how are you"})["answer"] == "S"
    drawn = app.get_graph()
    assert {(e.source, e.target) for e in drawn.edges if e.conditional} == {("route", "small"), ("route", "large")}
    with pytest.raises(InvalidInputError, match="no routing decision"):
        node.edge({"question": "x"})


def test_candidates_routed_to_nodes_named_otherwise() -> None:
    node = RouteNode(small_large_router(), nodes={"small": "cheap", "large": "dear"})
    builder = StateGraph(State)
    builder.add_node("route", node)
    builder.add_node("cheap", lambda s: {"answer": "S"})
    builder.add_node("dear", lambda s: {"answer": "L"})
    builder.add_edge(START, "route")
    builder.add_conditional_edges("route", node.edge, node.path_map)
    builder.add_edge("cheap", END)
    builder.add_edge("dear", END)
    app = builder.compile()
    out = app.invoke({"question": "integrate x squared"})
    assert out["answer"] == "L" and out["route"]["candidate"] == "large" and out["route"]["node"] == "dear"
    assert app.invoke({"question": "hello, how are you"})["answer"] == "S"
    routed = StateGraph(State)
    add_routed_branches(routed, "route", small_large_router(), {"small": lambda s: {"answer": "S"},
                                                                "large": lambda s: {"answer": "L"}},
                        nodes={"small": "cheap", "large": "dear"}, then=END)
    routed.add_edge(START, "route")
    assert routed.compile().invoke({"question": "integrate x squared"})["answer"] == "L"


def test_get_graph_of_a_routed_lcel_chain_draws_its_branches() -> None:
    chain = routed_chain(CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o"))
    drawn = chain.get_graph()
    router = next(n for n in drawn.nodes.values() if n.name.startswith("RouterRunnable[") and
                  not n.name.endswith("Output"))
    branches = {e.data: drawn.nodes[e.target].name for e in drawn.edges if e.source == router.id}
    assert branches == {"small": "CountingChat", "large": "CountingChat"}
    assert all(e.conditional for e in drawn.edges if e.source == router.id)
    assert "small" in drawn.draw_mermaid() and "large" in drawn.draw_mermaid()


def test_the_package_imports_langgraph_only_when_a_name_is_used() -> None:
    import subprocess
    import sys

    code = ("import sys, rag_routing.integrations.langgraph as g\n"
            "assert 'langgraph' not in sys.modules and 'langchain_core' not in sys.modules\n"
            "g.RouteNode\n"
            "assert 'langchain_core' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
