from __future__ import annotations

import json

import pytest

from rag_routing.errors import DatasetFormatError, InvalidInputError
from rag_routing.retrieval import (
    BM25Retriever,
    Document,
    RetrievedDocument,
    ScoredDocument,
    as_documents,
    load_corpus,
    load_qrels,
    load_queries,
)


def test_document_content_and_round_trip():
    doc = Document("d1", "body", title="Title", metadata={"year": 1971})
    assert doc.content == "Title\nbody"
    assert Document("d2", "only body").content == "only body"
    assert Document.from_dict(doc.to_dict()) == doc


def test_document_validation():
    with pytest.raises(InvalidInputError):
        Document("", "text")
    with pytest.raises(InvalidInputError):
        Document("x", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Document("x", "t", metadata=[1])  # type: ignore[arg-type]


def test_as_documents_accepts_strings_dicts_and_documents():
    docs = as_documents(["a text", {"_id": 7, "text": "b", "title": "B", "authors": "X"}, Document("z", "c")])
    assert [d.id for d in docs] == ["0", "7", "z"]
    assert docs[1].metadata == {"authors": "X"}
    with pytest.raises(InvalidInputError):
        as_documents("a single string")
    with pytest.raises(InvalidInputError):
        as_documents([3.14])


def test_scored_document():
    hit = ScoredDocument(Document("d", "t", title="T"), 1.5, 1, "bm25")
    assert (hit.id, hit.text, hit.title) == ("d", "t", "T")
    assert RetrievedDocument is ScoredDocument
    with pytest.raises(InvalidInputError):
        ScoredDocument(Document("d", "t"), float("nan"), 1, "x")
    with pytest.raises(InvalidInputError):
        ScoredDocument(Document("d", "t"), 1.0, 0, "x")


def test_beir_loaders(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in [
        {"_id": "1", "title": "Cats", "text": "cats purr", "authors": "A"},
        {"_id": "2", "title": "", "text": "dogs bark"},
    ]) + "\n\n", encoding="utf-8")
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "purring"}\n', encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\nq1\t2\t0\n", encoding="utf-8")
    docs = load_corpus(corpus)
    assert [d.id for d in docs] == ["1", "2"] and docs[0].metadata == {"authors": "A"}
    assert load_queries(queries) == {"q1": "purring"}
    assert load_qrels(qrels) == {"q1": {"1": 1, "2": 0}}
    retriever = BM25Retriever.from_jsonl(corpus, name="cats")
    assert retriever.name == "cats" and len(retriever) == 2
    assert retriever.retrieve("cats", k=1)[0].id == "1"


def test_beir_loader_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="no file"):
        load_corpus(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="bad.jsonl:1"):
        load_corpus(bad)
    with pytest.raises(DatasetFormatError):
        load_queries(bad)
    tsv = tmp_path / "q.tsv"
    tsv.write_text("q1\tonly-two-columns\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError):
        load_qrels(tsv)
