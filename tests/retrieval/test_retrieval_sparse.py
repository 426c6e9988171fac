from __future__ import annotations

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval import ENGLISH_STOPWORDS, BM25Retriever, Document, WordTokenizer
from rag_routing.retrieval.bm25_scoring import SparseBM25, select_top_k

QUERIES = ["where did the cat sit", "capital of France", "dense vector similarity search library",
           "cats and dogs", "term frequency", "the the the", "zzz unknown words", "capital capital city"]


def test_tokenizer_is_deterministic_and_unicode_aware():
    tok = WordTokenizer()
    assert tok("The Café's MENU, naïve résumé 42!") == ["café", "menu", "naïve", "résumé", "42"]
    assert WordTokenizer(stopwords=None)("The cat") == ["the", "cat"]
    assert WordTokenizer(stopwords=None, min_length=3)("a to cat") == ["cat"]
    assert "the" in ENGLISH_STOPWORDS and "cat" not in ENGLISH_STOPWORDS


@pytest.mark.parametrize("stopwords", [ENGLISH_STOPWORDS, None])
def test_sparse_backend_agrees_with_rank_bm25(corpus, stopwords):
    tok = WordTokenizer(stopwords=stopwords)
    reference = BM25Okapi([tok(d.content) for d in corpus])
    fast = BM25Retriever(tokenizer=tok).add_documents(corpus)
    slow = BM25Retriever(tokenizer=tok, backend="rank_bm25").add_documents(corpus)
    for q in QUERIES:
        expected = reference.get_scores(tok(q))
        assert np.allclose(fast.get_scores(q), expected, atol=1e-12)
        assert np.allclose(slow.get_scores(q), expected, atol=1e-12)
    for a, b in zip(fast.retrieve_batch(QUERIES, k=5), slow.retrieve_batch(QUERIES, k=5)):
        assert [(h.id, round(h.score, 10)) for h in a] == [(h.id, round(h.score, 10)) for h in b]


def test_agreement_on_a_random_corpus_with_repeated_and_common_words():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(40)]
    docs = [[str(w) for w in rng.choice(words, size=rng.integers(0, 30), p=None)] for _ in range(60)]
    docs[3] = []  # an empty document
    queries = [[str(w) for w in rng.choice(words, size=rng.integers(1, 6))] for _ in range(30)]
    reference = BM25Okapi(docs, k1=1.2, b=0.6)
    index = SparseBM25(docs, k1=1.2, b=0.6)
    assert np.allclose(index.scores(queries), np.vstack([reference.get_scores(q) for q in queries]), atol=1e-12)
    for q, (rows, scores) in zip(queries, index.top_k(queries, k=7)):
        full = reference.get_scores(q)
        matched = [i for i, d in enumerate(docs) if set(q) & set(d)]
        expected = sorted(matched, key=lambda i: (-full[i], i))[:7]
        assert rows.tolist() == expected and np.allclose(scores, full[expected])


def test_ranking_and_only_matching_documents_are_hits(corpus):
    r = BM25Retriever().add_documents(corpus)
    hits = r.retrieve("Which city is the capital of France?", k=10)
    assert [h.id for h in hits] == ["paris", "berlin"]  # the other documents share no word with the query
    assert [h.rank for h in hits] == [1, 2] and hits[0].score > hits[1].score
    assert all(h.retriever == "bm25" for h in hits)
    assert r.retrieve("the of and", k=3) == []  # only stopwords


def test_ties_break_by_insertion_order():
    r = BM25Retriever().add_documents(["apple pie", "apple pie", "banana"])
    assert [h.id for h in r.retrieve("apple", k=2)] == ["0", "1"]
    rows, scores = select_top_k(np.array([4, 7, 9]), np.array([1.0, 2.0, 1.0]), 2)
    assert rows.tolist() == [7, 4]


def test_index_is_rebuilt_after_adding_documents(corpus):
    r = BM25Retriever().add_documents(corpus[:3])
    assert r.retrieve("capital of France", k=3) == []
    r.add_documents(corpus[3:])
    assert r.retrieve("capital of France", k=1)[0].id == "paris"
    assert len(r) == len(corpus)


def test_k_larger_than_corpus_and_batch_matches_single(corpus):
    r = BM25Retriever().add_documents(corpus)
    assert len(r.retrieve("cats dogs", k=100)) == 2
    batch = r.retrieve_batch(QUERIES, k=3)
    assert [[h.id for h in hits] for hits in batch] == [[h.id for h in r.retrieve(q, k=3)] for q in QUERIES]


def test_input_errors(corpus):
    empty = BM25Retriever()
    with pytest.raises(InvalidInputError, match="no documents"):
        empty.retrieve("cats", k=1)
    r = BM25Retriever().add_documents(corpus)
    for bad_k in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError):
            r.retrieve("cats", k=bad_k)
    for bad_query in ("", "   "):
        with pytest.raises(InvalidInputError):
            r.retrieve(bad_query)
    with pytest.raises(InvalidInputError):
        r.retrieve(["cats"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        r.retrieve_batch("cats")
    with pytest.raises(InvalidInputError):
        r.retrieve_batch([])
    with pytest.raises(InvalidInputError):
        r.add_documents([])
    with pytest.raises(InvalidInputError, match="duplicate"):
        r.add_documents([Document("cats", "again")])
    with pytest.raises(InvalidInputError, match="duplicate"):
        BM25Retriever().add_documents([Document("a", "x"), Document("a", "y")])
    with pytest.raises(InvalidInputError):
        BM25Retriever(backend="elastic")
    with pytest.raises(InvalidInputError):
        BM25Retriever(b=2.0)
    with pytest.raises(InvalidInputError):
        BM25Retriever(name="")


def test_documents_without_any_word(corpus):
    for backend in ("sparse", "rank_bm25"):
        r = BM25Retriever(backend=backend).add_documents(["the of", "and or"])
        assert r.retrieve("anything", k=2) == []
        assert r.get_scores("anything").tolist() == [0.0, 0.0]


def test_custom_tokenizer(corpus):
    r = BM25Retriever(tokenizer=lambda text: text.lower().replace(".", " ").split()).add_documents(corpus)
    assert r.retrieve("FAISS", k=1)[0].id == "faiss"
