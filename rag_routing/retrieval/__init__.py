"""Retrieval blocks: dense (FAISS + sentence-transformers), sparse (BM25) and hybrid (reciprocal rank fusion).

Importing this package is light: FAISS, torch and sentence-transformers load on first use.

Example:
    >>> from rag_routing.retrieval import BM25Retriever, HybridRetriever
    >>> docs = ["the cat sat on the mat", "dogs chase cats", "stock markets fell"]
    >>> hybrid = HybridRetriever([BM25Retriever(name="a"), BM25Retriever(k1=0.9, name="b")]).add_documents(docs)
    >>> hybrid.retrieve("cat mat", k=1)[0].id
    '0'
"""

from rag_routing.retrieval.accounting import STAGE_INDEXING, STAGE_RETRIEVAL
from rag_routing.retrieval.base import Retriever
from rag_routing.retrieval.beir import load_corpus, load_qrels, load_queries
from rag_routing.retrieval.dense import DenseRetriever
from rag_routing.retrieval.documents import Document, RetrievedDocument, ScoredDocument, as_documents
from rag_routing.retrieval.hybrid import HybridRetriever, reciprocal_rank_fusion
from rag_routing.retrieval.metrics import evaluate, mrr, ndcg_at_k, recall_at_k
from rag_routing.retrieval.sparse import BM25Retriever
from rag_routing.retrieval.tokenizer import ENGLISH_STOPWORDS, WordTokenizer

__all__ = [
    "Retriever",
    "Document",
    "ScoredDocument",
    "RetrievedDocument",
    "as_documents",
    "DenseRetriever",
    "BM25Retriever",
    "HybridRetriever",
    "reciprocal_rank_fusion",
    "WordTokenizer",
    "ENGLISH_STOPWORDS",
    "load_corpus",
    "load_queries",
    "load_qrels",
    "ndcg_at_k",
    "recall_at_k",
    "mrr",
    "evaluate",
    "STAGE_RETRIEVAL",
    "STAGE_INDEXING",
]
