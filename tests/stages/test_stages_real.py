"""Slow tests: the real local model (SmolLM2-135M-Instruct), real FAISS + MiniLM, real BM25, bundled corpus."""

from __future__ import annotations

import asyncio

import pytest

from rag_routing.ledger import CostLedger, ledger_scope
from rag_routing.stages import RoutedRAG, score_answer
from rag_routing.stages.defaults import build_components
from rag_routing.stages.examples import DEMO_QUESTIONS

pytestmark = pytest.mark.slow

SINGLE_Q, SINGLE_A = DEMO_QUESTIONS[1]


@pytest.fixture(scope="module")
def components():
    return build_components()


@pytest.fixture(scope="module")
def rag(components) -> RoutedRAG:
    return RoutedRAG(**components.parts())


def test_real_retrievers_find_the_gold_passage(components):
    for name in ("dense", "bm25", "hybrid"):
        hits = components.retrievers[name].retrieve(SINGLE_Q, 3)
        assert "opera-0" in [h.id for h in hits], name
    with ledger_scope() as ledger:
        state = components.retriever_stage.invoke(SINGLE_Q)
    assert state.choices() == {"retriever": "hybrid"} and "opera-0" in state.document_ids
    components_ = {e.component for e in ledger.entries}
    assert {"dense", "bm25", "hybrid"} <= components_  # each retriever recorded its own work
    dense_entry = next(e for e in ledger.entries if e.component == "dense")
    assert dense_entry.input_tokens > 0 and dense_entry.model == "all-MiniLM-L6-v2"


def test_routed_rag_answers_the_single_hop_question(rag):
    ledger = CostLedger()
    with ledger_scope(ledger):
        out = rag.invoke(SINGLE_Q)
    assert score_answer(out.answer, [SINGLE_A])["acc"] == 1.0, out.answer
    stages = [s.stage for s in out.trace]
    assert stages[0] == "retrieval_strategy" and {"retriever", "context", "prompt", "generator"} <= set(stages)
    assert out.choices()["retrieval_strategy"] == "single"
    assert "opera-0" in out.document_ids
    by_stage = ledger.breakdown("stage")
    assert {"routing", "retrieval", "generation"} <= set(by_stage)
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert generation and all(e.model == "SmolLM2-135M-Instruct" and e.input_tokens > 0 for e in generation)
    # the trace's steps add up to the ledger
    assert out.cost()["calls"] == ledger.totals()["calls"]
    assert out.cost()["input_tokens"] == ledger.totals()["input_tokens"]
    assert out.cost()["seconds"] == pytest.approx(ledger.totals()["seconds"])
    gen_step = out.steps("generator")[-1]
    assert gen_step.calls >= 1 and gen_step.output_tokens > 0 and gen_step.energy_kwh is not None


def test_greeting_needs_no_retrieval_and_async_agrees(rag):
    greeting = DEMO_QUESTIONS[0][0]
    out = rag.invoke(greeting)
    assert out.choices()["retrieval_strategy"] == "none" and out.documents == [] and out.answer
    again = asyncio.run(rag.ainvoke(greeting))
    assert again.answer == out.answer and again.choices() == out.choices()


def test_demo_runs_and_routing_saves(components):
    from rag_routing.stages.demo import run_demo

    lines: list[str] = []
    result = run_demo(llm=components.llm, say=lines.append)
    rows = result["questions"]
    assert [r["choices"]["retrieval_strategy"] for r in rows] == ["none", "single", "multi"]
    assert rows[1]["correct"] is True
    assert result["bill"]["saving_usd"] > 0 and result["bill"]["always_biggest_usd"] > 0
    text = "\n".join(lines)
    assert "priced as gpt-4o" in text or "gpt-4o" in text
    assert "Hypothetical" in text and "== The bill" in text
