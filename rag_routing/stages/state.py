"""What flows through a routed RAG pipeline: :class:`RAGState`, and the :class:`TraceStep` of each stage.

Every stage node takes a :class:`RAGState` and returns a new one (states are never mutated in place:
:meth:`RAGState.evolve` copies). Each stage appends one :class:`TraceStep` saying what it chose, why, and
what that choice actually cost according to the cost ledger (US $, tokens, seconds, energy).

Example:
    >>> state = RAGState.coerce("Who wrote Hamlet?")
    >>> state.query, state.answer
    ('Who wrote Hamlet?', None)
    >>> later = state.evolve(answer="Shakespeare")
    >>> state.answer is None and later.answer == "Shakespeare"
    True
    >>> RAGState.coerce({"query": "hi", "history": [{"role": "user", "content": "hello"}]}).history[0]["role"]
    'user'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag_routing.errors import InvalidInputError

if TYPE_CHECKING:
    from rag_routing.decision import RoutingDecision
    from rag_routing.ledger.entry import LedgerEntry
    from rag_routing.retrieval.documents import ScoredDocument

#: The RAG stage names used in traces (a custom stage may use any other non-empty name).
STAGE_NAMES = ("retrieval_strategy", "retriever", "context", "prompt", "generator")


@dataclass(frozen=True)
class TraceStep:
    """One stage's choice and its real cost.

    Attributes:
        stage: the stage (``"retrieval_strategy"``, ``"retriever"``, ``"context"``, ``"prompt"``,
            ``"generator"`` or a custom name).
        choice: the option that ran (for Self-Route escalation: ``"chunks->full"``).
        reason: a sentence a person can read: the router's reason, the fixed default, or the escalation.
        decision: the router's :class:`~rag_routing.decision.RoutingDecision` as a dict (``None`` when no
            router chose).
        decision_id: id shared by this step, its routing decision and its ledger entries.
        usd, input_tokens, output_tokens, seconds, energy_kwh, emissions_gco2e, calls: sums over the ledger
            entries recorded while this stage ran, *excluding* nested stages (those have their own steps),
            so the steps of a trace add up to the ledger's totals. ``energy_kwh`` is ``None`` when no entry
            knew its energy.
        wall_seconds: wall-clock time of the stage, nested stages included.
        entry_ids: ids of the ledger entries counted in this step.
        metadata: stage-specific details (retrieved ids, the escalation, the model's price, ...).
    """

    stage: str
    choice: str
    reason: str
    decision: Mapping[str, Any] | None = None
    decision_id: str | None = None
    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    energy_kwh: float | None = None
    emissions_gco2e: float | None = None
    calls: int = 0
    wall_seconds: float = 0.0
    entry_ids: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entries(cls, stage: str, choice: str, reason: str, entries: Sequence[LedgerEntry], *,
                     decision: RoutingDecision | Mapping[str, Any] | None = None, decision_id: str | None = None,
                     wall_seconds: float = 0.0, metadata: Mapping[str, Any] | None = None) -> TraceStep:
        """A step whose cost is the sum of ``entries`` (exactly rounded sums, as the ledger's totals)."""
        energies = [e.energy_kwh for e in entries if e.energy_kwh is not None]
        emissions = [e.emissions_gco2e for e in entries if e.emissions_gco2e is not None]
        if decision is not None and not isinstance(decision, Mapping):
            decision = decision.to_dict()
        return cls(
            stage=stage, choice=choice, reason=reason, decision=decision, decision_id=decision_id,
            usd=math.fsum(e.cost_usd for e in entries),
            input_tokens=sum(e.input_tokens for e in entries),
            output_tokens=sum(e.output_tokens for e in entries),
            seconds=math.fsum(e.seconds for e in entries),
            energy_kwh=math.fsum(energies) if energies else None,
            emissions_gco2e=math.fsum(emissions) if emissions else None,
            calls=len(entries), wall_seconds=wall_seconds, entry_ids=tuple(e.entry_id for e in entries),
            metadata=dict(metadata or {}),
        )

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        out = dataclasses.asdict(self)
        out["decision"] = None if self.decision is None else dict(self.decision)
        out["entry_ids"] = list(self.entry_ids)
        out["metadata"] = dict(self.metadata)
        return out


def _check_history(history: Any) -> list[dict[str, str]]:
    if history is None:
        return []
    if isinstance(history, (str, Mapping)) or not isinstance(history, Sequence):
        raise InvalidInputError("history must be a list of {'role', 'content'} messages")
    out = []
    for i, message in enumerate(history):
        if isinstance(message, tuple) and len(message) == 2:
            role, content = message
        elif isinstance(message, Mapping):
            role, content = message.get("role"), message.get("content")
        else:
            raise InvalidInputError(f"history message {i} must be a {{'role', 'content'}} dict, got {message!r}")
        if not isinstance(role, str) or not role or not isinstance(content, str):
            raise InvalidInputError(f"history message {i} needs a string role and content, got {message!r}")
        out.append({"role": role, "content": content})
    return out


@dataclass(frozen=True)
class RAGState:
    """The state every stage node reads and returns (a new copy each time; see :meth:`evolve`).

    Attributes:
        query: the user's question (non-empty).
        history: earlier chat turns, ``{"role", "content"}`` dicts, oldest first.
        documents: retrieved :class:`~rag_routing.retrieval.documents.ScoredDocument` hits, best first.
        context: the text given to the generator (built by the context stage from ``documents``).
        messages: the chat messages the generator receives (built by the prompt stage).
        prompt_strategy: the prompt strategy that built ``messages`` (``"direct"``, ``"cot"``, ...).
        answer: the final answer (``None`` until a generator ran).
        trace: one :class:`TraceStep` per stage that ran, in order.
        metadata: free details passed between stages (``"max_new_tokens"``, ``"allow_unanswerable"``, ...).
    """

    query: str
    history: list[dict[str, str]] = field(default_factory=list)
    documents: list[ScoredDocument] = field(default_factory=list)
    context: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt_strategy: str | None = None
    answer: str | None = None
    trace: list[TraceStep] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise InvalidInputError(f"RAGState.query must be a non-empty string, got {self.query!r}")
        # Copies: a caller's list or dict must not change under a state (and vice versa).
        object.__setattr__(self, "history", _check_history(self.history))
        object.__setattr__(self, "documents", list(self.documents))
        object.__setattr__(self, "messages", [dict(m) for m in self.messages])
        object.__setattr__(self, "trace", list(self.trace))
        object.__setattr__(self, "metadata", dict(self.metadata))
        if not isinstance(self.context, str):
            raise InvalidInputError(f"RAGState.context must be a str, got {type(self.context).__name__}")
        if self.answer is not None and not isinstance(self.answer, str):
            raise InvalidInputError(f"RAGState.answer must be a str or None, got {type(self.answer).__name__}")
        for step in self.trace:
            if not isinstance(step, TraceStep):
                raise InvalidInputError(f"trace items must be TraceStep objects, got {type(step).__name__}")

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def coerce(cls, value: RAGState | str | Mapping[str, Any]) -> RAGState:
        """A state from a state (returned as is), a query string, or a dict of fields (``"question"`` and
        ``"input"`` are accepted for ``query``, as LangChain and LlamaIndex inputs name it)."""
        if isinstance(value, RAGState):
            return value
        if isinstance(value, str):
            return cls(query=value)
        if isinstance(value, Mapping):
            data = dict(value)
            for alias in ("question", "input"):
                if "query" not in data and alias in data:
                    data["query"] = data.pop(alias)
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise InvalidInputError(f"unknown RAGState fields {unknown}; known fields: {sorted(known)}")
            if "query" not in data:
                raise InvalidInputError("a RAGState dict needs a 'query' (or 'question' / 'input')")
            return cls(**data)
        raise InvalidInputError(f"cannot make a RAGState from {type(value).__name__}; pass a str, dict or RAGState")

    def evolve(self, **changes: Any) -> RAGState:
        """A copy with ``changes`` applied (lists and dicts copied; the original is unchanged)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidInputError(f"unknown RAGState fields {unknown}; known fields: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def with_metadata(self, **items: Any) -> RAGState:
        """A copy whose ``metadata`` has ``items`` added."""
        return self.evolve(metadata={**self.metadata, **items})

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def document_ids(self) -> list[str]:
        return [d.id for d in self.documents]

    def steps(self, stage: str) -> list[TraceStep]:
        """The trace steps of ``stage`` (a stage may run more than once, e.g. the generator after escalation)."""
        return [s for s in self.trace if s.stage == stage]

    def choices(self) -> dict[str, str]:
        """``{stage: choice}`` of the trace (the last choice when a stage ran more than once)."""
        return {s.stage: s.choice for s in self.trace}

    def cost(self) -> dict[str, Any]:
        """Totals over the trace: ``usd``, ``input_tokens``, ``output_tokens``, ``seconds``, ``energy_kwh``,
        ``calls`` (equal to the ledger's totals over this request's entries)."""
        energies = [s.energy_kwh for s in self.trace if s.energy_kwh is not None]
        return {
            "usd": math.fsum(s.usd for s in self.trace),
            "input_tokens": sum(s.input_tokens for s in self.trace),
            "output_tokens": sum(s.output_tokens for s in self.trace),
            "seconds": math.fsum(s.seconds for s in self.trace),
            "energy_kwh": math.fsum(energies) if energies else None,
            "calls": sum(s.calls for s in self.trace),
        }

    def trace_table(self) -> str:
        """The trace as a terminal table: stage, choice, $, tokens, seconds, reason."""
        from rag_routing.stages.trace_format import format_trace

        return format_trace(self.trace)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (documents as ``{"id", "title", "text", "score", "rank", "retriever"}``)."""
        return {
            "query": self.query,
            "history": [dict(m) for m in self.history],
            "documents": [{"id": d.id, "title": d.title, "text": d.text, "score": d.score, "rank": d.rank,
                           "retriever": d.retriever} for d in self.documents],
            "context": self.context,
            "messages": [dict(m) for m in self.messages],
            "prompt_strategy": self.prompt_strategy,
            "answer": self.answer,
            "trace": [s.to_dict() for s in self.trace],
            "metadata": dict(self.metadata),
        }


__all__ = ["RAGState", "TraceStep", "STAGE_NAMES"]
