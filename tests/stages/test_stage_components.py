"""The five stage routers with a fake LLM and a real BM25 index over the bundled corpus."""

from __future__ import annotations

import asyncio

import pytest

from rag_routing.errors import InvalidInputError, UnknownCandidateError
from rag_routing.ledger import ledger_scope
from rag_routing.routers.supervised import ClassifierRouter
from rag_routing.stages import (
    ContextRouter, GeneratorRouter, PricedLLM, PromptStrategyRouter, RAGState, RetrievalStrategyRouter,
    RetrieverRouter, is_unanswerable,
)
from rag_routing.stages.complexity import ComplexityClassifierRouter, complexity_dataset, silver_labels
from rag_routing.stages.context import parents_from_documents
from rag_routing.stages.pipeline import AnswerChain

from stage_fakes import FakeLLM

MULTI_Q = "In which town was the engineer who designed the Halden Bridge born?"


# -- retrieval strategy ------------------------------------------------------------------------------------
def test_strategies_none_single_multi(bm25, fake_llm):
    stage = RetrievalStrategyRouter(bm25, fake_llm, k=2, max_steps=3)
    assert set(stage.options) == {"none", "single", "multi"} and stage.default == "single"
    none = RetrievalStrategyRouter(bm25, fake_llm, k=2, default="none").invoke(MULTI_Q)
    assert none.documents == [] and fake_llm.calls == []
    single = stage.invoke(MULTI_Q)
    assert len(single.documents) == 2 and single.choices()["retrieval_strategy"] == "single"
    multi = RetrievalStrategyRouter(bm25, fake_llm, k=2, max_steps=3, default="multi").invoke(MULTI_Q)
    assert set(single.document_ids) <= set(multi.document_ids) and "mara_voss-0" in multi.document_ids
    assert [d.rank for d in multi.documents] == list(range(1, len(multi.documents) + 1))
    step = multi.steps("retrieval_strategy")[0]
    assert step.metadata["retrieval_steps"] >= 2 and step.calls >= 1  # the follow-up LLM calls are its cost
    assert "Mara Voss" in step.metadata["retrieval_queries"][1]  # the follow-up query carries the LLM's sentence
    assert len(fake_llm.calls) == step.metadata["retrieval_steps"] - 1
    # every retrieval ran through the retriever stage: one nested trace step each
    assert len(multi.steps("retriever")) == step.metadata["retrieval_steps"]


def test_multi_step_is_deterministic_and_async_agrees(bm25, fake_llm):
    stage = RetrievalStrategyRouter(bm25, fake_llm, k=2, default="multi")
    a, b = stage.invoke(MULTI_Q), stage.invoke(MULTI_Q)
    c = asyncio.run(stage.ainvoke(MULTI_Q))
    assert a.document_ids == b.document_ids == c.document_ids


def test_multi_needs_an_llm(bm25):
    assert "multi" not in RetrievalStrategyRouter(bm25).options
    with pytest.raises(InvalidInputError):
        RetrievalStrategyRouter()


def test_silver_labels_are_the_simplest_right_strategy():
    outcomes = {"none": [1, 0, 0, 0], "single": [1, 1, 0, 0], "multi": [1, 1, 1, 0]}
    assert silver_labels(outcomes) == ["none", "single", "multi", None]
    assert silver_labels(outcomes, fallback=["x", "x", "x", "multi"])[-1] == "multi"
    ds = complexity_dataset(["a", "b", "c", "d"], outcomes, {"none": 0, "single": 1, "multi": 3},
                            fallback=[None, None, None, "single"])
    assert [m["silver_label"] for m in ds.metadata] == ["none", "single", "multi", "single"]
    with pytest.raises(InvalidInputError):
        silver_labels({"none": [1]})


def test_fit_from_outcomes_routes_by_complexity(bm25, fake_llm):
    chit = [f"hello there, nice day number {i}" for i in range(8)]
    facts = [f"what is the capital of country {i}" for i in range(8)]
    chains = [f"who is the wife of the king who founded the academy of city {i}" for i in range(8)]
    queries = chit + facts + chains
    outcomes = {"none": [1] * 8 + [0] * 16, "single": [1] * 16 + [0] * 8, "multi": [1] * 16 + [0] * 8}
    fallback = ["single"] * 16 + ["multi"] * 8  # chains: nobody answered -> dataset bias says multi
    stage = RetrievalStrategyRouter(bm25, fake_llm, k=2)
    stage.select_by_cv = False  # the classifier's mechanics: by outcomes, "multi" never helped these chains
    stage.fit_from_outcomes(queries, outcomes, {"none": 0.0, "single": 1.0, "multi": 3.0}, fallback=fallback,
                            router=ComplexityClassifierRouter(featurizer="tfidf"))
    assert stage.choose("hello there, nice day").choice == "none"
    assert stage.choose("what is the capital of country 42").choice == "single"
    assert stage.choose("who is the wife of the king who founded the academy of city 9").choice == "multi"
    out = stage.invoke("hello there, nice day")
    assert out.documents == [] and out.trace[0].decision["router"] == "complexity"


# -- retriever ---------------------------------------------------------------------------------------------
def test_retriever_router_fixed_and_routed(demo_documents, bm25):
    from rag_routing.retrieval import BM25Retriever

    titles_only = BM25Retriever(name="titles").add_documents(
        [{"_id": d.id, "text": d.title} for d in demo_documents])
    stage = RetrieverRouter({"bm25": bm25, "titles": titles_only}, k=3)
    out = stage.invoke("Who designed the Velmora Opera House?")
    assert out.choices() == {"retriever": "bm25"} and out.document_ids[0] == "opera-0"
    assert out.trace[0].metadata["document_ids"] == out.document_ids
    stage.fit_from_labels([f"opera question {i}" for i in range(6)] + [f"title lookup {i}" for i in range(6)],
                          ["bm25"] * 6 + ["titles"] * 6, router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    assert stage.invoke("title lookup please").choices()["retriever"] == "titles"
    with pytest.raises(UnknownCandidateError):
        RetrieverRouter({"bm25": bm25}, default="dense")


# -- context (Self-Route) ----------------------------------------------------------------------------------
def _answer_chain(llm) -> AnswerChain:
    return AnswerChain(PromptStrategyRouter(), GeneratorRouter({"fake": llm}))


def test_context_escalates_when_the_model_says_unanswerable(bm25, demo_documents, fake_llm):
    docs = bm25.retrieve(MULTI_Q, 2)
    stage = ContextRouter(parents=parents_from_documents(demo_documents), max_chunks=2).with_answerer(
        _answer_chain(fake_llm))
    with ledger_scope() as ledger:
        out = stage.invoke(RAGState(query=MULTI_Q, documents=docs))
    assert out.answer == "Ostrelle"
    step = out.steps("context")[0]
    assert step.choice == "chunks->full" and step.metadata["escalated"] is True
    assert step.metadata["chunk_answer"] == "unanswerable" and "unanswerable" in step.reason
    assert len(out.steps("generator")) == 2  # answered twice: chunks, then full documents
    first_prompt, second_prompt = fake_llm.calls
    assert "reply exactly: unanswerable" in first_prompt[0]["content"]
    assert "unanswerable" not in second_prompt[0]["content"]
    assert len(second_prompt[-1]["content"]) > len(first_prompt[-1]["content"])  # the full documents are longer
    assert "allow_unanswerable" not in out.metadata
    assert out.cost()["calls"] == ledger.totals()["calls"]


def test_context_keeps_the_chunk_answer_when_answered(bm25):
    llm = FakeLLM(rule=lambda messages: "Ilse Brandt")
    docs = bm25.retrieve("Who designed the Velmora Opera House?", 2)
    stage = ContextRouter().with_answerer(_answer_chain(llm))
    out = stage.invoke(RAGState(query="Who designed the Velmora Opera House?", documents=docs))
    assert out.answer == "Ilse Brandt" and out.steps("context")[0].choice == "chunks" and len(llm.calls) == 1


def test_context_judge_hook_can_force_escalation(bm25):
    llm = FakeLLM(rule=lambda messages: "Ilse Brandt")
    docs = bm25.retrieve("Who designed the Velmora Opera House?", 2)
    stage = ContextRouter(judge=lambda state: 0.1).with_answerer(_answer_chain(llm))
    out = stage.invoke(RAGState(query="Who designed the Velmora Opera House?", documents=docs))
    assert out.steps("context")[0].choice == "chunks->full" and "judge" in out.steps("context")[0].reason


def test_context_without_answerer_builds_context_only(bm25, demo_documents):
    docs = [d for d in bm25.retrieve("Velmora Opera House", 2) if d.id == "opera-0"]
    chunks = ContextRouter().invoke(RAGState(query="q", documents=docs))
    full = ContextRouter(parents=parents_from_documents(demo_documents), default="full").invoke(
        RAGState(query="q", documents=docs))
    assert chunks.context.startswith("[1] Velmora Opera House: ") and chunks.answer is None
    assert "glass dome" not in chunks.context and "glass dome" in full.context


@pytest.mark.parametrize("text,expected", [("unanswerable", True), ("The context does not contain it.", True),
                                           ("I don't know", True), ("", True), (None, True),
                                           ("Ostrelle", False), ("It was answered in 1902.", False)])
def test_is_unanswerable(text, expected):
    assert is_unanswerable(text) is expected


# -- prompt and generator ----------------------------------------------------------------------------------
def test_prompt_strategies_build_messages():
    state = RAGState(query="Who?", context="Ada did.", history=[{"role": "user", "content": "earlier"}])
    direct = PromptStrategyRouter().invoke(state)
    assert direct.prompt_strategy == "direct" and direct.messages[-1]["content"].startswith("Context:")
    assert direct.messages[1] == {"role": "user", "content": "earlier"}
    cot = PromptStrategyRouter(default="cot").invoke(state)
    assert cot.metadata["answer_prefix"] == "Answer:" and cot.metadata["max_new_tokens"] == 64
    few = PromptStrategyRouter(default="few_shot").invoke(state)
    assert [m["role"] for m in few.messages[:5]] == ["system", "user", "assistant", "user", "assistant"]


def test_generator_extracts_cot_answer_and_reports_price():
    llm = FakeLLM(rule=lambda messages: "The bridge is in Velmora. Answer: Ostrelle")
    state = PromptStrategyRouter(default="cot").invoke(RAGState(query="q", context="c"))
    out = GeneratorRouter({"fake": llm}).invoke(state)
    assert out.answer == "Ostrelle" and out.metadata["raw_answer"].startswith("The bridge")
    assert out.trace[-1].metadata["model"] == "fake-llm"


def test_priced_llm_bills_the_named_model():
    llm = FakeLLM()
    big = PricedLLM(llm, "gpt-4o", name="big")
    stage = GeneratorRouter({"small": llm, "big": big}, default="big")
    with ledger_scope() as ledger:
        out = stage.invoke("Where?")
    entries = [e for e in ledger.entries if e.model == "gpt-4o"]
    assert len(entries) == 1 and entries[0].metadata["hypothetical_price"] is True
    assert entries[0].cost_usd > 0 and out.trace[-1].usd == pytest.approx(ledger.totals()["cost_usd"])
    assert out.trace[-1].metadata["price_as"] == "gpt-4o" and out.trace[-1].metadata["usd_per_mtok_in"] == 2.5
    with pytest.raises(InvalidInputError):
        PricedLLM(llm, "no-such-model-xyz")


def test_plain_callable_generator_is_recorded():
    stage = GeneratorRouter({"echo": lambda messages: "Lima"})
    with ledger_scope() as ledger:
        out = stage.invoke("Capital of Peru?")
    assert out.answer == "Lima" and ledger.totals()["calls"] == 1 and out.trace[0].output_tokens >= 1
