"""`MeteredEmbeddings`: a LangChain ``Embeddings`` whose calls are budgeted and recorded in the ambient ledger.

LangChain's ``Embeddings`` interface has no callbacks, so the ambient meter of ``ledger_scope`` cannot see
embedding calls. Wrap the embeddings once (``MeteredEmbeddings(OpenAIEmbeddings(...))``) and hand the wrapper to
the vector store: each ``embed_documents`` / ``embed_query`` (and async forms) counts the texts' tokens, reserves
their price before the call (:class:`~rag_routing.errors.BudgetExceededError` /
:class:`~rag_routing.errors.UnknownPriceError` before the provider runs) and records one ``"embedding"`` entry
(the decision id of the route that chose it, when inside one). Outside a ledger scope it is a plain pass-through.

Example:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> from rag_routing.ledger import ledger_scope
    >>> embeddings = MeteredEmbeddings(DeterministicFakeEmbedding(size=8), model="text-embedding-3-small")
    >>> with ledger_scope() as ledger:
    ...     _ = embeddings.embed_documents(["one document", "another document"])
    >>> e = ledger.entries[0]
    >>> e.stage, e.model, e.input_tokens, e.cost_usd > 0
    ('embedding', 'text-embedding-3-small', 4, True)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from langchain_core.embeddings import Embeddings

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import EMBEDDING
from rag_routing.ledger.tokens import count_tokens_batch

T = TypeVar("T")
_MODEL_ATTRS = ("model", "model_name", "deployment", "model_id")


class MeteredEmbeddings(Embeddings):
    """``embeddings`` with every call reserved, then recorded, in the ambient ledger (module docstring).

    Args:
        embeddings: any LangChain ``Embeddings``.
        model: the name to price calls as (default: the wrapped object's ``model`` / ``model_name``).
        pricing: its price when the price table does not know it.
        allow_unpriced: record an unknown model at an explicit $0 instead of raising ``UnknownPriceError``.
        stage: the ledger stage (default ``"embedding"``).
    """

    def __init__(self, embeddings: Embeddings, *, model: str | None = None, pricing: Pricing | None = None,
                 allow_unpriced: bool = False, stage: str = EMBEDDING):
        if not isinstance(embeddings, Embeddings):
            raise InvalidInputError(f"MeteredEmbeddings wraps a LangChain Embeddings, got {type(embeddings).__name__}")
        if pricing is not None and not isinstance(pricing, Pricing):
            raise InvalidInputError(f"pricing must be a Pricing, got {type(pricing).__name__}")
        self.embeddings = embeddings
        found = next((getattr(embeddings, a) for a in _MODEL_ATTRS
                      if isinstance(getattr(embeddings, a, None), str) and getattr(embeddings, a)), None)
        self.model = model or found or type(embeddings).__name__
        self.pricing = pricing
        self.allow_unpriced = allow_unpriced
        self.stage = stage

    def _guard(self, texts: list[str]) -> tuple[Any, int]:
        ledger = current_ledger()
        if ledger is None:
            return None, 0
        tokens = sum(count_tokens_batch(texts, self.model)) if texts else 0
        guard = ledger.guard(stage=self.stage, model=self.model, component=self.model, est_input_tokens=tokens,
                             pricing=self.pricing, allow_unpriced=True if self.allow_unpriced else None,
                             metadata={"texts": len(texts), "source": "langchain"})
        return guard, tokens

    def _run(self, texts: list[str], call: Callable[[], T]) -> T:
        guard, tokens = self._guard(texts)
        if guard is None:
            return call()
        with guard as metered:
            out = call()
            metered.record(input_tokens=tokens, output_tokens=0)
        return out

    async def _arun(self, texts: list[str], call: Callable[[], Awaitable[T]]) -> T:
        guard, tokens = self._guard(texts)
        if guard is None:
            return await call()
        async with guard as metered:
            out = await call()
            metered.record(input_tokens=tokens, output_tokens=0)
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._run(list(texts), lambda: self.embeddings.embed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._run([text], lambda: self.embeddings.embed_query(text))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._arun(list(texts), lambda: self.embeddings.aembed_documents(texts))

    async def aembed_query(self, text: str) -> list[float]:
        return await self._arun([text], lambda: self.embeddings.aembed_query(text))

    def __repr__(self) -> str:
        return f"MeteredEmbeddings({self.embeddings!r}, model={self.model!r})"


__all__ = ["MeteredEmbeddings"]
