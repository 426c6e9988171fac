"""Read a BEIR-format collection: ``corpus.jsonl``, ``queries.jsonl`` and a qrels TSV.

BEIR (Thakur et al. 2021, "BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information Retrieval
Models") stores one JSON object per line (``{"_id", "title", "text"}``) and judgements as
``query-id<TAB>corpus-id<TAB>score`` with a header line.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "hello"}\\n')
    >>> _ = (folder / "qrels.tsv").write_text("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\nq2\\td1\\t0\\n")
    >>> [d.id for d in load_corpus(folder / "corpus.jsonl")]
    ['d1']
    >>> load_qrels(folder / "qrels.tsv")
    {'q1': {'d1': 1}, 'q2': {'d1': 0}}
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from rag_routing.errors import DatasetFormatError, InvalidInputError
from rag_routing.json_input import parse_json
from rag_routing.retrieval.documents import Document


def _open(path: str | os.PathLike[str]) -> Path:
    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(f"no file at {source}; check the path (BEIR corpora are corpus.jsonl files)")
    return source


def load_corpus(path: str | os.PathLike[str]) -> list[Document]:
    """Documents of a BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``; other keys go to metadata)."""
    source = _open(path)
    docs: list[Document] = []
    with source.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                docs.append(Document.from_dict(parse_json(line, f"{source}:{line_no}")))
            except InvalidInputError as exc:
                raise DatasetFormatError(f"{source}:{line_no}: not a BEIR document ({exc})") from exc
    return docs


def load_queries(path: str | os.PathLike[str], text_field: str = "text") -> dict[str, str]:
    """``{query id: text}`` from a BEIR ``queries.jsonl`` (``text_field="question"`` for MuSiQue files)."""
    source = _open(path)
    queries: dict[str, str] = {}
    with source.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = parse_json(line, f"{source}:{line_no}")
                queries[str(record["_id"])] = str(record[text_field])
            except (KeyError, TypeError) as exc:
                raise DatasetFormatError(f"{source}:{line_no}: expected {{'_id', {text_field!r}}} ({exc})") from exc
    return queries


def load_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """``{query id: {doc id: relevance}}`` from a BEIR qrels TSV (header line optional)."""
    source = _open(path)
    qrels: dict[str, dict[str, int]] = {}
    with source.open(encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (line_no == 1 and row[0] == "query-id"):
                continue
            try:
                query_id, doc_id, score = row[0], row[1], int(float(row[2]))
            except (IndexError, ValueError) as exc:
                raise DatasetFormatError(f"{source}:{line_no}: expected query-id, corpus-id, score") from exc
            qrels.setdefault(query_id, {})[doc_id] = score
    return qrels


__all__ = ["load_corpus", "load_queries", "load_qrels"]
