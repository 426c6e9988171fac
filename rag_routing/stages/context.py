"""Context stage: retrieved chunks, or the full documents they come from (Self-Route).

Z. Li et al. 2024 ("Retrieval Augmented Generation or Long-Context LLMs? A Comprehensive Study and Hybrid
Approach", EMNLP Industry) route *after* generating: the model first answers from the retrieved chunks with a
prompt that lets it decline ("unanswerable"); only when it declines is the query sent again with the long
context. That matched long-context quality with far fewer tokens for GPT-4o and beat it for GPT-3.5.

:class:`ContextRouter` has two options that build ``state.context``:

* ``chunks`` — the top ``max_chunks`` retrieved documents, numbered: ``[1] Title: text``;
* ``full`` — the full documents the retrieved chunks belong to (chunks grouped by a parent key, e.g.
  ``metadata["parent_id"]`` or the title), in rank order, up to ``max_chars``; without parents, every
  retrieved document (a longer context).

With an ``answerer`` (the prompt and generator stages; :class:`~rag_routing.stages.pipeline.RoutedRAG` sets
it) and ``self_route=True``, the stage answers from ``chunks`` with the prompt's unanswerable clause switched
on (``state.metadata["allow_unanswerable"]``: the prompt stage adds *"If the context does not contain the
answer, reply exactly: unanswerable"*). If the answer is a refusal (:func:`is_unanswerable`) or the optional
``judge(state)`` rejects it, it escalates: builds the ``full`` context and answers again without the clause.
The trace step's choice is then ``"chunks->full"``. A router may instead pick ``chunks``/``full`` up front.

Example:
    >>> from rag_routing.retrieval import Document, ScoredDocument
    >>> hit = ScoredDocument(Document("d1#0", "Lima is the capital.", "Peru", {"parent_id": "d1"}), 1.0, 1, "bm25")
    >>> stage = ContextRouter(parents={"d1": "Peru. Lima is the capital. Spanish is spoken."})
    >>> stage.invoke(RAGState(query="Capital of Peru?", documents=[hit])).context
    '[1] Peru: Lima is the capital.'
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval.documents import Document, ScoredDocument
from rag_routing.stages.base import Option, StageChoice, StageRouter, arun_option, run_option
from rag_routing.stages.state import RAGState

_REFUSALS = re.compile(
    r"\bunanswerable\b|\bcannot be answered\b|\bnot enough information\b|\binsufficient information\b|"
    r"\bcontext does not (?:contain|provide|mention|say)\b|\bno information\b|\bi (?:do not|don't) know\b",
    re.IGNORECASE)

Answerer = Callable[[RAGState], RAGState]
Judge = Callable[[RAGState], Any]


def is_unanswerable(answer: str | None) -> bool:
    """True when the answer declines: "unanswerable", "cannot be answered", "not enough information", "the
    context does not contain ...", "I don't know" (case-insensitive), or when it is empty."""
    return answer is None or not answer.strip() or bool(_REFUSALS.search(answer))


def _parent_id(doc: Document, key: str) -> str | None:
    if key == "title":
        return doc.title or None
    value = doc.metadata.get(key)
    return None if value is None else str(value)


def parents_from_documents(documents: Iterable[Document], key: str = "parent_id") -> dict[str, str]:
    """``{parent id: full text}``: the chunks sharing a parent key joined in corpus order (``key="title"``
    groups by title, e.g. the paragraphs of one Wikipedia article)."""
    grouped: dict[str, list[str]] = {}
    for doc in documents:
        parent = _parent_id(doc, key)
        if parent is not None:
            grouped.setdefault(parent, []).append(doc.text)
    return {parent: " ".join(texts) for parent, texts in grouped.items()}


def _label(doc: ScoredDocument) -> str:
    return f"{doc.title}: " if doc.title else ""


class ChunkContext:
    """The ``chunks`` option: the top ``max_chunks`` documents, numbered, at most ``max_chars``."""

    def __init__(self, max_chunks: int = 5, max_chars: int = 6000):
        self.max_chunks, self.max_chars = int(max_chunks), int(max_chars)

    def invoke(self, state: RAGState) -> RAGState:
        parts = [f"[{i}] {_label(d)}{d.text}" for i, d in enumerate(state.documents[: self.max_chunks], 1)]
        return state.evolve(context="\n".join(parts)[: self.max_chars])


class FullDocumentContext:
    """The ``full`` option: each retrieved chunk's full parent document (once each), in rank order.

    Args:
        parents: ``{parent id: full text}`` or a callable ``ScoredDocument -> full text or None``; ``None``
            uses every retrieved document as it is (a longer context than ``chunks``).
        parent_key: metadata key of a chunk's parent id (``"title"``: the title).
        max_chars: cap on the context (the local model's window is 8k tokens; small models read badly far
            beyond a few thousand characters).
    """

    def __init__(self, parents: Mapping[str, str] | Callable[[ScoredDocument], str | None] | None = None,
                 parent_key: str = "parent_id", max_chars: int = 6000):
        self.parents, self.parent_key, self.max_chars = parents, parent_key, int(max_chars)

    def _full_text(self, doc: ScoredDocument) -> tuple[str, str]:
        if callable(self.parents):
            text = self.parents(doc)
            return (doc.id if text is None else f"fn:{doc.id}"), text or doc.text
        parent = _parent_id(doc.document, self.parent_key)
        if self.parents is not None and parent is not None and parent in self.parents:
            return parent, self.parents[parent]
        return doc.id, doc.text

    def invoke(self, state: RAGState) -> RAGState:
        seen: set[str] = set()
        parts: list[str] = []
        for doc in state.documents:
            key, text = self._full_text(doc)
            if key in seen:
                continue
            seen.add(key)
            parts.append(f"[{len(parts) + 1}] {_label(doc)}{text}")
        return state.evolve(context="\n".join(parts)[: self.max_chars])


class ContextRouter(StageRouter):
    """Chunks or full documents, with Self-Route escalation (see module docstring).

    Args:
        options: replace the built ``{"chunks", "full"}`` options.
        parents, parent_key: how ``full`` finds a chunk's document (see :class:`FullDocumentContext`).
        max_chunks: documents in the ``chunks`` context.
        max_chars: cap on either context.
        answerer: ``RAGState -> RAGState`` that answers from ``state.context`` (prompt + generator).
        judge: optional ``state -> bool | float``; False or a score < 0.5 rejects the chunk answer.
        self_route: escalate from ``chunks`` to ``full`` when the answer is declined or rejected.
        router, default, lam, budget, name: see :class:`~rag_routing.stages.base.StageRouter`.
    """

    stage = "context"

    def __init__(self, options: Mapping[str, Option] | None = None, *,
                 parents: Mapping[str, str] | Callable[[ScoredDocument], str | None] | None = None,
                 parent_key: str = "parent_id", max_chunks: int = 5, max_chars: int = 6000,
                 answerer: Answerer | None = None, judge: Judge | None = None, self_route: bool = True,
                 router: Any = None, default: str | None = None, lam: float | None = None,
                 budget: float | None = None, name: str | None = None):
        if options is None:
            options = {"chunks": ChunkContext(max_chunks, max_chars),
                       "full": FullDocumentContext(parents, parent_key, max_chars)}
        if default is None and "chunks" in options:
            default = "chunks"
        if answerer is not None and not (callable(answerer) or callable(getattr(answerer, "invoke", None))):
            raise InvalidInputError("answerer must be a callable RAGState -> RAGState (or have invoke)")
        if judge is not None and not callable(judge):
            raise InvalidInputError("judge must be a callable RAGState -> bool | float")
        self.answerer, self.judge, self.self_route = answerer, judge, bool(self_route)
        super().__init__(options, router=router, default=default, lam=lam, budget=budget, name=name)

    def with_answerer(self, answerer: Answerer | None) -> ContextRouter:
        """A copy of this stage that answers with ``answerer`` (the options and router are shared)."""
        clone = copy.copy(self)
        clone.answerer = answerer
        return clone

    # -- Self-Route -----------------------------------------------------------------------------------------
    def _escalates(self, choice: str, state: RAGState) -> bool:
        return (self.answerer is not None and self.self_route and choice == "chunks" and "full" in self.options
                and bool(state.documents))

    def _verdict(self, answered: RAGState) -> str | None:
        """Why the chunk answer is rejected, or ``None`` when it stands."""
        if is_unanswerable(answered.answer):
            return f"the model declared it unanswerable from the chunks ({(answered.answer or '').strip()[:60]!r})"
        if self.judge is not None:
            verdict = self.judge(answered)
            if verdict is False or (isinstance(verdict, (int, float)) and not isinstance(verdict, bool)
                                    and verdict < 0.5):
                return f"the judge rejected the chunk answer (verdict {verdict!r})"
        return None

    @staticmethod
    def _allow(state: RAGState, allow: bool) -> RAGState:
        metadata = {k: v for k, v in state.metadata.items() if k != "allow_unanswerable"}
        if allow:
            metadata["allow_unanswerable"] = True
        return state.evolve(metadata=metadata)

    @staticmethod
    def _restart(original: RAGState, answered: RAGState) -> RAGState:
        """The original state (documents, no answer) carrying the trace so far."""
        return original.evolve(trace=answered.trace)

    def _run(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        if not state.documents:
            return self._empty(run_option(self.answerer, self._allow(state.evolve(context=""), False))
                               if self.answerer is not None else state.evolve(context=""))
        built = run_option(self.options[choice.choice], state)
        if self.answerer is None:
            return built, choice.choice, {"context_chars": len(built.context)}
        if not self._escalates(choice.choice, state):
            return self._allow(run_option(self.answerer, self._allow(built, False)), False), choice.choice, \
                {"context_chars": len(built.context)}
        first = run_option(self.answerer, self._allow(built, True))
        why = self._verdict(first)
        if why is None:
            return self._allow(first, False), "chunks", self._kept(choice, built)
        full = run_option(self.options["full"], self._restart(state, first))
        second = run_option(self.answerer, self._allow(full, False))
        return self._allow(second, False), "chunks->full", self._escalated(choice, why, first, full)

    async def _arun(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        if not state.documents:
            return self._empty(await arun_option(self.answerer, self._allow(state.evolve(context=""), False))
                               if self.answerer is not None else state.evolve(context=""))
        built = await arun_option(self.options[choice.choice], state)
        if self.answerer is None:
            return built, choice.choice, {"context_chars": len(built.context)}
        if not self._escalates(choice.choice, state):
            answered = await arun_option(self.answerer, self._allow(built, False))
            return self._allow(answered, False), choice.choice, {"context_chars": len(built.context)}
        first = await arun_option(self.answerer, self._allow(built, True))
        why = self._verdict(first)
        if why is None:
            return self._allow(first, False), "chunks", self._kept(choice, built)
        full = await arun_option(self.options["full"], self._restart(state, first))
        second = await arun_option(self.answerer, self._allow(full, False))
        return self._allow(second, False), "chunks->full", self._escalated(choice, why, first, full)

    def choose(self, state: Any) -> StageChoice:
        """No documents: nothing to choose (no router call); else as :meth:`StageRouter.choose`."""
        state = RAGState.coerce(state)
        if not state.documents:
            return StageChoice("none", None, "no documents were retrieved: no context, answered without one")
        return super().choose(state)

    @staticmethod
    def _empty(answered: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        return answered, "none", {"context_chars": 0}

    @staticmethod
    def _kept(choice: StageChoice, built: RAGState) -> dict[str, Any]:
        return {"reason": f"{choice.reason}; Self-Route: the model answered from the chunks, no escalation",
                "escalated": False, "context_chars": len(built.context)}

    @staticmethod
    def _escalated(choice: StageChoice, why: str, first: RAGState, full: RAGState) -> dict[str, Any]:
        return {"reason": f"{choice.reason}; Self-Route: {why}; escalated to the full documents",
                "escalated": True, "chunk_answer": first.answer, "context_chars": len(full.context)}


__all__ = ["ContextRouter", "ChunkContext", "FullDocumentContext", "is_unanswerable", "parents_from_documents"]
