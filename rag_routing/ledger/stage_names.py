"""The stage names the library's own components record under, so a ledger's breakdown by stage lines up.

The ledger accepts any non-empty stage name (your own components may use theirs); these are the ones
rag_routing writes: LLM calls that produce an answer, retrievals, embeddings, a router's own decision (its
features, scoring and any LLM it asks) and answer judges.

Example:
    >>> from rag_routing.ledger import CostLedger
    >>> ledger = CostLedger()
    >>> _ = ledger.record(GENERATION, "gpt-4o-mini", cost_usd=0.001)
    >>> list(ledger.breakdown("stage"))
    ['generation']
"""

from __future__ import annotations

GENERATION = "generation"
RETRIEVAL = "retrieval"
INDEXING = "indexing"
EMBEDDING = "embedding"
ROUTING = "routing"
JUDGE = "judge"

__all__ = ["GENERATION", "RETRIEVAL", "INDEXING", "EMBEDDING", "ROUTING", "JUDGE"]
