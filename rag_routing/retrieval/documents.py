"""Documents a retriever indexes and the scored hits it returns.

Example:
    >>> doc = Document(id="d1", text="FAISS searches dense vectors.", title="FAISS")
    >>> doc.content
    'FAISS\\nFAISS searches dense vectors.'
    >>> hit = ScoredDocument(document=doc, score=0.83, rank=1, retriever="dense")
    >>> hit.id, hit.rank
    ('d1', 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rag_routing.errors import InvalidInputError


@dataclass(frozen=True, slots=True, eq=True)
class Document:
    """One passage of a corpus.

    Attributes:
        id: unique id within the retriever (BEIR's ``_id``).
        text: the passage.
        title: optional title, indexed together with the text (see :attr:`content`).
        metadata: free JSON-able details (source, authors, ...); saved with a dense index.
    """

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidInputError(f"Document.id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str):
            raise InvalidInputError(f"Document {self.id!r}: text must be a str, got {type(self.text).__name__}")
        if not isinstance(self.title, str):
            raise InvalidInputError(f"Document {self.id!r}: title must be a str, got {type(self.title).__name__}")
        if not isinstance(self.metadata, Mapping):
            raise InvalidInputError(f"Document {self.id!r}: metadata must be a mapping")

    __hash__ = None  # type: ignore[assignment]  # metadata is a dict: documents are compared, not hashed

    @property
    def content(self) -> str:
        """What retrievers index: the title and the text, one line apart (the text alone without a title)."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, Any]:
        """BEIR-style JSON: ``{"_id", "title", "text", "metadata"}``."""
        return {"_id": self.id, "title": self.title, "text": self.text, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        """Read a BEIR record (``_id`` or ``id``, ``text``, ``title``); other keys go to ``metadata``."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a document must be a JSON object, got {type(data).__name__}")
        doc_id = data.get("_id", data.get("id"))
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        metadata = dict(data.get("metadata") or {})
        metadata.update({k: v for k, v in data.items() if k not in ("_id", "id", "text", "title", "metadata")})
        return cls(id=doc_id, text=data.get("text", ""), title=data.get("title") or "", metadata=metadata)


def as_documents(items: Iterable[Document | str | Mapping[str, Any]]) -> list[Document]:
    """Documents from documents, BEIR dicts, or bare strings (which get ids ``"0"``, ``"1"``, ...)."""
    if isinstance(items, (str, Document, Mapping)):
        raise InvalidInputError("pass a list of documents, not a single one")
    out: list[Document] = []
    for i, item in enumerate(items):
        if isinstance(item, Document):
            out.append(item)
        elif isinstance(item, str):
            out.append(Document(id=str(i), text=item))
        elif isinstance(item, Mapping):
            out.append(Document.from_dict(item))
        else:
            raise InvalidInputError(f"item {i} is {type(item).__name__}; expected Document, dict or str")
    return out


@dataclass(frozen=True, slots=True)
class ScoredDocument:
    """A retrieved document with its score, 1-based rank and the name of the retriever that found it."""

    document: Document
    score: float
    rank: int
    retriever: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.score):
            raise InvalidInputError(f"score of {self.document.id!r} is not finite: {self.score!r}")
        if self.rank < 1:
            raise InvalidInputError(f"rank is 1-based, got {self.rank}")

    @property
    def id(self) -> str:
        return self.document.id

    @property
    def text(self) -> str:
        return self.document.text

    @property
    def title(self) -> str:
        return self.document.title


RetrievedDocument = ScoredDocument
"""Alias: the name some frameworks use for a scored hit."""

__all__ = ["Document", "ScoredDocument", "RetrievedDocument", "as_documents"]
