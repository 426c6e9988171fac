"""RoutedRAG: composing any subset of stages, sync / async / batch parity, traces that add up to the ledger."""

from __future__ import annotations

import asyncio

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import CostLedger, ledger_scope
from rag_routing.routers.supervised import ClassifierRouter
from rag_routing.stages import (
    ContextRouter, GeneratorRouter, PricedLLM, PromptStrategyRouter, RetrievalStrategyRouter, RetrieverRouter,
    RoutedRAG,
)
from rag_routing.stages.context import parents_from_documents

from stage_fakes import FakeLLM

QUESTIONS = ["Hello there!", "Who designed the Velmora Opera House?",
             "In which town was the engineer who designed the Halden Bridge born?"]


def answer_rule(messages):
    system, user = messages[0]["content"], messages[-1]["content"]
    if "fact from it" in system:
        return "The Halden Bridge was designed by Mara Voss."
    if "Context:" not in user:
        return "Hi! How can I help?"
    if "Opera" in user:
        return "Ilse Brandt"
    if "reply exactly: unanswerable" in system:
        return "unanswerable"
    return "Ostrelle"


def full_pipeline(bm25, demo_documents, llm) -> RoutedRAG:
    strategy = RetrievalStrategyRouter(RetrieverRouter({"bm25": bm25}, k=2), llm, k=2, max_steps=2)
    strategy.fit_from_labels(
        ["hello", "hi there", "good morning", "who built the tower", "when was the lighthouse built",
         "what is the currency", "where was the king who built the tower born",
         "in which town was the writer who founded the academy born", "when did the wife of the founder die"],
        ["none"] * 3 + ["single"] * 3 + ["multi"] * 3, router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    big = PricedLLM(llm, "gpt-4o", name="big")
    return RoutedRAG(retrieval_strategy=strategy, context=ContextRouter(parents=parents_from_documents(demo_documents)),
                     prompt=PromptStrategyRouter(), generator=GeneratorRouter({"small": llm, "big": big}))


def test_full_pipeline_answers_and_traces(bm25, demo_documents):
    rag = full_pipeline(bm25, demo_documents, FakeLLM(answer_rule))
    with ledger_scope() as ledger:
        states = [rag.invoke(q) for q in QUESTIONS]
    greeting, single, multi = states
    assert greeting.choices()["retrieval_strategy"] == "none" and greeting.documents == []
    assert greeting.choices()["context"] == "none"
    assert single.answer == "Ilse Brandt" and single.choices()["context"] == "chunks"
    assert multi.choices()["retrieval_strategy"] == "multi" and multi.answer == "Ostrelle"
    for state in states:
        assert state.trace[0].stage == "retrieval_strategy" and state.trace[-1].stage == "generator"
        assert all(step.reason for step in state.trace)
    totals = ledger.totals()
    assert sum(s.cost()["calls"] for s in states) == totals["calls"]
    assert sum(s.cost()["input_tokens"] for s in states) == totals["input_tokens"]
    assert sum(s.cost()["usd"] for s in states) == pytest.approx(totals["cost_usd"])
    ids = {e.entry_id for e in ledger.entries}
    traced = [i for s in states for step in s.trace for i in step.entry_ids]
    assert sorted(traced) == sorted(ids)  # every entry belongs to exactly one step


def test_sync_async_batch_give_the_same_answers_and_traces(bm25, demo_documents):
    rag = full_pipeline(bm25, demo_documents, FakeLLM(answer_rule))
    sync = [rag.invoke(q) for q in QUESTIONS]
    asynchronous = [asyncio.run(rag.ainvoke(q)) for q in QUESTIONS]
    batch = rag.batch(QUESTIONS, max_concurrency=3)
    abatch = asyncio.run(rag.abatch(QUESTIONS))
    for run in (asynchronous, batch, abatch):
        assert [s.answer for s in run] == [s.answer for s in sync]
        assert [[(t.stage, t.choice) for t in s.trace] for s in run] == [[(t.stage, t.choice) for t in s.trace]
                                                                          for s in sync]


def test_concurrent_abatch_attributes_every_entry_once(bm25, demo_documents):
    rag = full_pipeline(bm25, demo_documents, FakeLLM(answer_rule))
    ledger = CostLedger()
    rag.ledger = ledger
    states = asyncio.run(rag.abatch(QUESTIONS * 3))
    assert sum(s.cost()["calls"] for s in states) == ledger.totals()["calls"]
    assert sum(s.cost()["usd"] for s in states) == pytest.approx(ledger.totals()["cost_usd"])


def test_subsets_compose(bm25):
    llm = FakeLLM(lambda messages: "Velmora")
    retrieval_only = RoutedRAG(retriever=bm25, k=2)
    out = retrieval_only.invoke("capital of Tesmark")
    assert out.answer is None and out.context.startswith("[1]") and [s.stage for s in out.trace] == ["retriever"]
    generator_only = RoutedRAG(generator=llm)
    assert generator_only.invoke("hi").answer == "Velmora"
    with_prompt = RoutedRAG(retriever=bm25, prompt=PromptStrategyRouter(default="few_shot"), generator=llm)
    state = with_prompt.invoke("capital of Tesmark")
    assert [s.stage for s in state.trace] == ["retriever", "prompt", "generator"]
    assert state.prompt_strategy == "few_shot"


def test_invalid_compositions():
    with pytest.raises(InvalidInputError):
        RoutedRAG(retrieval_strategy=RetrievalStrategyRouter(options={"none": lambda s: s}), retriever=object())
    with pytest.raises(InvalidInputError):
        RoutedRAG(context="chunks")
