"""A small hand-written corpus shared by the retrieval tests."""

from __future__ import annotations

import pytest

from rag_routing.retrieval import Document

CORPUS = [
    Document("cats", "The cat sat on the warm mat and purred.", title="Cats"),
    Document("dogs", "Dogs chase cats and bark at the mail carrier.", title="Dogs"),
    Document("stocks", "Stock markets fell sharply as interest rates rose.", title="Markets"),
    Document("paris", "Paris is the capital and largest city of France.", title="Paris"),
    Document("berlin", "Berlin is the capital of Germany.", title="Berlin"),
    Document("faiss", "FAISS is a library for efficient similarity search of dense vectors.", title="FAISS"),
    Document("bm25", "BM25 ranks documents by term frequency and inverse document frequency.", title="BM25"),
    Document("python", "Python is a programming language that lets you work quickly.", title="Python",
             metadata={"source": "python.org"}),
]


@pytest.fixture
def corpus() -> list[Document]:
    return list(CORPUS)


@pytest.fixture
def tfidf_embedder():
    """A real, torch-free featurizer (TF-IDF + LSA) fitted on the corpus: dense tests without MiniLM."""
    from rag_routing.embeddings import TfidfFeaturizer

    return TfidfFeaturizer(n_components=6).fit([d.content for d in CORPUS])
