"""Fixtures of the stage-router tests: a deterministic fake LLM (routing logic only) and a small BM25 corpus.

The fake LLM stands in for a model in the fast tests of routing logic; the slow tests
(``test_stages_real.py``) use the real local model, FAISS, BM25 and MiniLM.
"""

from __future__ import annotations

import pytest

from rag_routing.retrieval import BM25Retriever, load_corpus
from rag_routing.stages.defaults import demo_corpus_path
from stage_fakes import FakeLLM


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture(scope="session")
def demo_documents():
    return load_corpus(demo_corpus_path())


@pytest.fixture
def bm25(demo_documents) -> BM25Retriever:
    return BM25Retriever(name="bm25").add_documents(demo_documents)
