"""Routing the retrieval strategy after a first retrieval (retrieval-confidence probe), real BM25, fake LLM."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.ledger import CostLedger, ledger_scope
from rag_routing.retrieval.documents import Document, ScoredDocument
from rag_routing.routers.supervised import ClassifierRouter
from rag_routing.stages import RetrievalStrategyRouter
from rag_routing.stages.retrieval_probe import FEATURES, RetrievalProbe

# Questions whose words match the bundled corpus strongly (one retrieval finds the evidence) ...
STRONG = ["Mara Voss engineer born 1862 town Ostrelle", "Velmora Opera House opened 1899 architect Ilse Brandt",
          "Royal Academy of Brennholm founded 1790 King Arvid", "Mount Kesh highest mountain Tesmark 2,140 metres",
          "krell currency Tesmark hundred ores", "Ostrelle lighthouse built 1841 still in use",
          "Queen Lisbet of Harrow born Denby 1752", "Halden Bridge Velmora crosses river Auro"]
# ... and questions that match it weakly (the evidence needs a follow-up retrieval).
WEAK = ["where was she from", "what year did it happen", "who made the thing", "how tall is it",
        "when was he married", "what is it called", "who was the first", "where did they go"]


WEAK_Q = "where was the engineer born"


def _scored(scores: list[float]) -> list[ScoredDocument]:
    return [ScoredDocument(Document(id=f"d{i}", text="x"), s, i + 1, "bm25") for i, s in enumerate(scores)]


def test_probe_features_from_scores():
    probe = RetrievalProbe(tuple(FEATURES), k=3)
    f = probe.features("two words", _scored([8.0, 6.0, 2.0]))
    assert f.tolist() == [8.0, 4.0, 0.25, 0.75]  # top, per distinct term, (s1-s2)/s1, (s1-sk)/s1
    assert probe.features("q", _scored([5.0])).tolist() == [5.0, 5.0, 1.0, 1.0]  # missing documents score 0
    assert probe.features("q", []).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert probe.features_batch(["a", "b"], [_scored([1.0, 1.0]), _scored([2.0])]).shape == (2, 4)
    with pytest.raises(InvalidInputError):
        RetrievalProbe(("top_score", "vibes"))
    with pytest.raises(InvalidInputError):
        RetrievalProbe("top_score")
    with pytest.raises(InvalidInputError):
        RetrievalProbe(k=1)
    with pytest.raises(InvalidInputError):
        probe.features_batch(["a"], [])


def _fitted(bm25, llm) -> RetrievalStrategyRouter:
    # λ = 0.2 per cost unit: multi (3 units) must be worth 0.4 more than single (1 unit) to be chosen
    stage = RetrievalStrategyRouter(bm25, llm, k=2, max_steps=2, probe=True, lam=0.2)
    queries = STRONG + WEAK
    outcomes = {"single": [1.0] * 8 + [0.0] * 8, "multi": [1.0] * 16}
    return stage.fit_from_outcomes(queries, outcomes, {"single": 1.0, "multi": 3.0})


def test_probe_routes_on_retrieval_confidence_and_reuses_the_documents(bm25, fake_llm):
    stage = _fitted(bm25, fake_llm)
    features = stage.probe_features(STRONG + WEAK)[:, 0]
    assert features[:8].min() > features[8:].max()  # the probe separates the two kinds of question
    strong = "Ilse Brandt architect born 1851 Brennholm"
    choice = stage.choose(strong)
    assert choice.choice == "single" and "probe top_score=" in choice.reason and choice.prepared is not None
    assert choice.recorded_seconds > 0
    assert stage.choose(WEAK_Q).choice == "multi"

    ledger = CostLedger()
    with ledger_scope(ledger):
        single = stage.invoke(strong)
    retrievals = [e for e in ledger.entries if e.stage == "retrieval"]
    assert len(retrievals) == 1  # the probe *was* the single retrieval: nothing retrieved twice
    assert single.document_ids == [d.id for d in bm25.retrieve(strong, 2)]
    assert single.steps("retrieval_strategy")[0].metadata["retrieval_steps"] == 1

    multi = stage.invoke(WEAK_Q)
    step = multi.steps("retrieval_strategy")[0]
    assert step.choice == "multi" and step.metadata["retrieval_steps"] == 2
    assert len(multi.steps("retriever")) == 2  # the probe, then one follow-up
    assert multi.document_ids[:2] == [d.id for d in bm25.retrieve(WEAK_Q, 2)]
    assert asyncio.run(stage.ainvoke(WEAK_Q)).document_ids == multi.document_ids


def test_probe_none_drops_documents_but_keeps_the_paid_retrieval(bm25, fake_llm):
    stage = RetrievalStrategyRouter(bm25, fake_llm, k=2, probe=True)
    stage.select_by_cv = False  # the probe mechanics, not whether routing beats always-"none" (it does not here)
    stage.fit_from_outcomes(STRONG + WEAK, {"none": [1.0] * 16, "single": [1.0] * 16}, {"none": 0.0, "single": 1.0})
    out = stage.invoke("Mara Voss engineer")
    assert out.choices()["retrieval_strategy"] == "none" and out.documents == []
    assert len(out.steps("retriever")) == 1 and out.steps("retrieval_strategy")[0].seconds > 0


def test_probe_needs_a_router_fitted_on_probe_features(bm25, fake_llm):
    stage = RetrievalStrategyRouter(bm25, fake_llm, k=2, probe=True,
                                    router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    with pytest.raises(NotFittedError):
        stage.choose("who did it")
    stage.fit_from_labels(STRONG + WEAK, ["single"] * 8 + ["multi"] * 8,
                          router=ClassifierRouter(mode="direct", featurizer="tfidf"))
    with pytest.raises(InvalidInputError, match="probe features"):
        stage.choose("who did it")
    with pytest.raises(InvalidInputError):
        RetrievalStrategyRouter(options={"single": lambda s: s}, probe=True)
    with pytest.raises(InvalidInputError):
        RetrievalStrategyRouter(bm25, probe="yes")
    with pytest.raises(InvalidInputError):
        RetrievalStrategyRouter(bm25).probe_features(["q"])


def test_probe_router_saves_and_loads(bm25, fake_llm, tmp_path):
    stage = _fitted(bm25, fake_llm)
    path = stage.router.save(tmp_path / "probe.npz")
    loaded = type(stage.router).load(path)
    X = stage.probe_features(STRONG + WEAK)
    np.testing.assert_allclose(loaded.predict_quality(X), stage.router.predict_quality(X))
    again = RetrievalStrategyRouter(bm25, fake_llm, k=2, max_steps=2, probe=True, router=loaded, lam=0.2)
    assert [again.choose(q).choice for q in STRONG + WEAK] == [stage.choose(q).choice for q in STRONG + WEAK]
