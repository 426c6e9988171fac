"""Dense retrieval: a sentence embedder and a FAISS inner-product index over L2-normalised vectors (cosine).

Karpukhin et al. 2020 ("Dense Passage Retrieval for Open-Domain Question Answering") for the method; Johnson,
Douze & Jégou 2019 ("Billion-scale similarity search with GPUs") for FAISS; Malkov & Yashunin 2018 for the
optional HNSW graph index. The default embedder is the offline all-MiniLM-L6-v2; any sentence-transformers
name or local path, or any object with ``name`` and ``transform(texts) -> (n, d) array``, works.
FAISS and the embedder load on first use.

Example:
    >>> r = DenseRetriever().add_documents(["Paris is the capital of France.", "FAISS indexes vectors."])
    >>> r.retrieve("Which city is France's capital?", k=1)[0].id
    '0'
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_routing.allowed_models import allow_models, check_model_allowed
from rag_routing.errors import CorruptStateError, InvalidInputError, UnknownPriceError, require
from rag_routing.json_input import parse_json
from rag_routing.retrieval.accounting import STAGE_INDEXING, STAGE_RETRIEVAL, record_embedding
from rag_routing.retrieval.base import Retriever
from rag_routing.retrieval.documents import Document, ScoredDocument

if TYPE_CHECKING:
    from rag_routing.candidates import Pricing

INDEX_KINDS = ("flat", "hnsw")
FORMAT_VERSION = 1
_INDEX_FILE, _META_FILE = "index.faiss", "documents.json"


def _make_embedder(embedder: Any, cache: Any) -> Any:
    from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, SentenceTransformerEmbedder

    if embedder is None or isinstance(embedder, (str, os.PathLike)):
        return SentenceTransformerEmbedder(str(embedder or DEFAULT_EMBEDDING_MODEL), cache=cache)
    if not callable(getattr(embedder, "transform", None)):
        raise InvalidInputError(
            f"embedder must be None, a model name or path, or an object with transform(texts); got "
            f"{type(embedder).__name__}"
        )
    return embedder


def _resolve_pricing(embedder: Any, pricing: Pricing | None) -> Pricing:
    from rag_routing.embeddings import SentenceTransformerEmbedder, TfidfFeaturizer
    from rag_routing.ledger.pricing import ZERO_PRICE, default_table

    if pricing is not None:
        return pricing
    if isinstance(embedder, (SentenceTransformerEmbedder, TfidfFeaturizer)) or getattr(embedder, "local", False):
        return ZERO_PRICE  # runs on this machine: explicitly free, whatever its name
    name = str(getattr(embedder, "name", type(embedder).__name__))
    found = default_table().find(name)
    if found is None:
        raise UnknownPriceError(
            f"no price known for embedder {name!r}; pass DenseRetriever(pricing=Pricing(...)), or give the "
            "embedder a `local = True` attribute if it runs locally for free"
        )
    return found.pricing


def _normalised(vectors: Any) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim != 2:
        raise InvalidInputError(f"the embedder returned an array of shape {matrix.shape}; expected (n, d)")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _atomic_write(target: Path, write: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class DenseRetriever(Retriever):
    """Embeds documents and queries with one model and searches by cosine similarity in FAISS.

    Args:
        embedder: ``None`` (offline all-MiniLM-L6-v2), a sentence-transformers name or local path, or an
            object with ``name`` and ``transform(texts)``.
        index: ``"flat"`` (exact ``IndexFlatIP``) or ``"hnsw"`` (approximate ``IndexHNSWFlat``, inner product).
        hnsw_m, ef_construction, ef_search: HNSW graph degree and search breadth.
        cache: for an embedder built here, ``True`` (or an ``EmbeddingCache``) keeps vectors on disk.
        pricing: $ per 1M embedded tokens; default 0 for local embedders, else the price table (unknown
            remote embedders are an error here, not at query time).
        name: name in results and in the ledger (default ``"dense-<model>"``).
    """

    default_name = "dense"

    def __init__(self, embedder: Any = None, index: str = "flat", *, hnsw_m: int = 32,
                 ef_construction: int = 80, ef_search: int = 64, cache: Any = None,
                 pricing: Pricing | None = None, name: str | None = None):
        if index not in INDEX_KINDS:
            raise InvalidInputError(f"unknown index {index!r}; choose one of {INDEX_KINDS}")
        self.embedder = _make_embedder(embedder, cache)
        self.embedder_name = str(getattr(self.embedder, "name", type(self.embedder).__name__))
        super().__init__(name or f"dense-{Path(self.embedder_name).name}")
        self.index_kind = index
        self.hnsw_m, self.ef_construction, self.ef_search = int(hnsw_m), int(ef_construction), int(ef_search)
        self.pricing = _resolve_pricing(self.embedder, pricing)
        self.index_: Any = None

    @property
    def ledger_model(self) -> str:  # type: ignore[override]
        return self.embedder_name

    @property
    def dim(self) -> int | None:
        """Vector dimension (``None`` before the first document)."""
        return None if self.index_ is None else int(self.index_.d)

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(n, d)`` float32 unit vectors of ``texts`` with this retriever's embedder."""
        return _normalised(self.embedder.transform(texts))

    # -- indexing -----------------------------------------------------------------------------------------
    def _new_index(self, dim: int) -> Any:
        faiss = require("faiss", "retrieval")
        if self.index_kind == "flat":
            return faiss.IndexFlatIP(dim)
        index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _prepare_documents(self, documents: list[Document]) -> np.ndarray:
        vectors = self.embed([doc.content for doc in documents])
        if vectors.shape[0] != len(documents):
            raise InvalidInputError(f"the embedder returned {vectors.shape[0]} vectors for {len(documents)} texts")
        return vectors

    def _add_documents(self, documents: list[Document], prepared: np.ndarray) -> None:
        if self.index_ is None:
            self.index_ = self._new_index(prepared.shape[1])
        elif prepared.shape[1] != self.index_.d:
            raise InvalidInputError(f"vectors of dimension {prepared.shape[1]} for an index of {self.index_.d}")
        self.index_.add(prepared)

    def _account_indexing(self, documents: list[Document], seconds: float) -> None:
        record_embedding(STAGE_INDEXING, self.name, self.embedder_name, [d.content for d in documents], seconds,
                         pricing=self.pricing, metadata={"n_documents": len(documents), "index": self.index_kind})

    # -- search -------------------------------------------------------------------------------------------
    def _retrieve_batch(self, queries: list[str], k: int) -> list[list[ScoredDocument]]:
        vectors = self.embed(queries)
        with self._lock:  # FAISS must not search while add() reallocates the index
            if vectors.shape[1] != self.index_.d:
                raise InvalidInputError(
                    f"the embedder gives {vectors.shape[1]}-d vectors but the index holds {self.index_.d}-d ones; "
                    "use the embedder the index was built with"
                )
            scores, rows = self.index_.search(vectors, min(k, self.index_.ntotal))
        out = []
        for row_ids, row_scores in zip(rows, scores):
            found = row_ids >= 0  # HNSW pads with -1 when it finds fewer than k
            out.append(self._hits(row_ids[found], row_scores[found]))
        return out

    def _account_retrieval(self, queries: list[str], k: int, seconds: float) -> None:
        record_embedding(STAGE_RETRIEVAL, self.name, self.embedder_name, queries, seconds, pricing=self.pricing,
                         metadata={"n_queries": len(queries), "k": k, "index": self.index_kind})

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path/index.faiss`` (``faiss.write_index``) and ``path/documents.json``, each atomically.

        No pickle: the JSON holds the documents, the embedder's name and the index file's SHA-256, so a
        mismatched or altered pair is detected by :meth:`load`.
        """
        if self.index_ is None:
            raise InvalidInputError(f"retriever {self.name!r} holds no documents; nothing to save")
        faiss = require("faiss", "retrieval")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            docs = list(self._docs)
            _atomic_write(folder / _INDEX_FILE, lambda tmp: faiss.write_index(self.index_, tmp))
        meta = {
            "format_version": FORMAT_VERSION, "name": self.name, "embedder": self.embedder_name,
            "index": self.index_kind, "hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction,
            "ef_search": self.ef_search, "dim": int(self.index_.d),
            "index_sha256": hashlib.sha256((folder / _INDEX_FILE).read_bytes()).hexdigest(),
            "documents": [doc.to_dict() for doc in docs],
        }
        try:
            text = json.dumps(meta, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"document metadata must be JSON-able to be saved ({exc})") from exc
        _atomic_write(folder / _META_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedder: Any = None, *, cache: Any = None,
             pricing: Pricing | None = None, allowed_models: Sequence[str] | None = None) -> DenseRetriever:
        """Rebuild a retriever written by :meth:`save` (the embedder by its saved name unless one is given; a
        saved name must be the packaged model or in ``allowed_models``, see :mod:`rag_routing.allowed_models`)."""
        folder = Path(path)
        if not (folder / _META_FILE).is_file() or not (folder / _INDEX_FILE).is_file():
            raise InvalidInputError(f"no saved dense retriever at {folder} (expected {_INDEX_FILE} and {_META_FILE})")
        try:
            meta = parse_json((folder / _META_FILE).read_bytes(), str(folder / _META_FILE), error=CorruptStateError)
            index_bytes = (folder / _INDEX_FILE).read_bytes()
            docs = [Document.from_dict(d) for d in meta["documents"]]
            saved_embedder, kind = str(meta["embedder"]), str(meta["index"])
            expected_sha = meta["index_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptStateError(f"{folder} is not a readable saved retriever ({exc}); rebuild it") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise CorruptStateError(f"{folder}: unsupported format version {meta.get('format_version')!r}")
        if embedder is None:
            with allow_models(allowed_models):
                check_model_allowed(saved_embedder, f"{folder}/{_META_FILE}")
        if hashlib.sha256(index_bytes).hexdigest() != expected_sha:
            raise CorruptStateError(f"{folder}/{_INDEX_FILE} does not match {_META_FILE}; rebuild the index")
        faiss = require("faiss", "retrieval")
        try:
            index = faiss.read_index(str(folder / _INDEX_FILE))
        except RuntimeError as exc:
            raise CorruptStateError(f"{folder}/{_INDEX_FILE} is not a FAISS index ({exc})") from exc
        if index.ntotal != len(docs) or index.d != meta.get("dim"):
            raise CorruptStateError(f"{folder}: index holds {index.ntotal} vectors for {len(docs)} documents")
        built = cls(embedder if embedder is not None else saved_embedder, index=kind, cache=cache, pricing=pricing,
                    hnsw_m=meta.get("hnsw_m", 32), ef_construction=meta.get("ef_construction", 80),
                    ef_search=meta.get("ef_search", 64), name=meta.get("name"))
        if built.embedder_name != saved_embedder:
            warnings.warn(f"index was built with embedder {saved_embedder!r}, loaded with {built.embedder_name!r}",
                          stacklevel=2)
        if kind == "hnsw":
            index.hnsw.efSearch = built.ef_search
        built.index_ = index
        built._docs = docs
        built._ids = {doc.id: i for i, doc in enumerate(docs)}
        return built


__all__ = ["DenseRetriever", "INDEX_KINDS"]
