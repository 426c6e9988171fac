"""What retrieval spends goes to the ambient cost ledger (``ledger_scope()``), when one is active.

Local components are explicitly free: their entries carry ``cost_usd=0`` through an explicit zero
:class:`~rag_routing.candidates.Pricing`, never a price-table look-up that could raise. Embedding calls
count their input tokens (tiktoken, offline; ``estimated=True``) and get the ledger's energy estimate when
the price table knows the model's size (``all-MiniLM-L6-v2``: 0.0227 B parameters).

Example:
    >>> from rag_routing.ledger import ledger_scope
    >>> with ledger_scope() as ledger:
    ...     record_local(STAGE_RETRIEVAL, "bm25", "bm25", seconds=0.001)
    >>> (ledger.entries[0].stage, ledger.entries[0].cost_usd)
    ('retrieval', 0.0)
    >>> record_local(STAGE_RETRIEVAL, "bm25", "bm25", seconds=0.001)  # no ambient ledger: nothing happens
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rag_routing.ledger.stage_names import INDEXING, RETRIEVAL

if TYPE_CHECKING:
    from rag_routing.candidates import Pricing
    from rag_routing.ledger.ledger import CostLedger

#: Stage of a query-time call (embedding the query, searching the index, fusing rankings).
STAGE_RETRIEVAL = RETRIEVAL
#: Stage of building an index (embedding or tokenising the corpus).
STAGE_INDEXING = INDEXING


def active_ledger() -> CostLedger | None:
    """The ambient ledger of :func:`~rag_routing.ledger.scope.ledger_scope`, or ``None`` outside one."""
    from rag_routing.ledger.scope import current_ledger

    return current_ledger()


def record_embedding(stage: str, component: str, model: str, texts: Sequence[str], seconds: float, *,
                     pricing: Pricing, metadata: Mapping[str, Any] | None = None) -> None:
    """Record one embedding call over ``texts`` (tokens counted only when a ledger is listening)."""
    ledger = active_ledger()
    if ledger is None:
        return
    from rag_routing.ledger.tokens import count_tokens_batch

    tokens = sum(count_tokens_batch(list(texts))) if texts else 0
    ledger.record_call(stage=stage, model=model, component=component, input_tokens=tokens, output_tokens=0,
                       seconds=seconds, pricing=pricing, metadata=metadata, estimated=True)


def record_local(stage: str, component: str, model: str, seconds: float, *,
                 metadata: Mapping[str, Any] | None = None) -> None:
    """Record a free local computation (BM25 scoring, rank fusion): no tokens, 0 $, its wall time."""
    ledger = active_ledger()
    if ledger is None:
        return
    ledger.record(stage, component, model, seconds=seconds, cost_usd=0.0, metadata=metadata)


__all__ = ["STAGE_RETRIEVAL", "STAGE_INDEXING", "active_ledger", "record_embedding", "record_local"]
