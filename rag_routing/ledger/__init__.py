"""The single cost ledger: what every stage and router of a request spent, in $, tokens, seconds and CO2.

* :class:`CostLedger` records :class:`LedgerEntry` rows (thread- and asyncio-safe), prices LLM calls
  (:meth:`CostLedger.record_call`), reports totals and breakdowns, exports JSON / CSV.
* :func:`ledger_scope` / :func:`current_ledger` make one ledger ambient for a request (asyncio tasks inherit
  it; threads through :class:`LedgerThreadPoolExecutor` or :func:`run_in_ledger_context`).
* :class:`Budget` refuses a call *before* it runs when its estimate does not fit (reserve -> commit).
* :class:`PriceTable` / :func:`estimate_cost` (shipped, dated prices), :func:`count_tokens` (tiktoken,
  offline), :class:`EnergyModel` / :func:`estimate_energy` (EcoLogits), stores (:class:`MemoryStore`,
  :class:`SQLiteStore`).

Example:
    >>> from rag_routing.ledger import Budget, CostLedger, ledger_scope
    >>> with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
    ...     _ = ledger.record_call(stage="generation", model="gpt-4o", input_tokens=1200, output_tokens=300)
    >>> round(ledger.totals()["cost_usd"], 4)
    0.006
"""

from rag_routing.ledger.budget import Amounts, Budget, Reservation
from rag_routing.ledger.budget_stores import BudgetStore, MemoryBudgetStore
from rag_routing.ledger.energy import EnergyEstimate, EnergyModel, estimate_energy
from rag_routing.ledger.entry import LedgerEntry
from rag_routing.ledger.guard import CallGuard
from rag_routing.ledger.ledger import CallEstimate, CostLedger
from rag_routing.ledger.pricing import ModelInfo, PriceTable, estimate_cost
from rag_routing.ledger.sqlite_budget_store import SQLiteBudgetStore
from rag_routing.ledger.scope import (
    LedgerThreadPoolExecutor,
    bind_context,
    current_ledger,
    ledger_scope,
    run_in_ledger_context,
)
from rag_routing.ledger.redis_bandit_store import RedisBanditStore
from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore, StoreUnavailableError
from rag_routing.ledger.stores import LedgerStore, MemoryStore, SQLiteStore
from rag_routing.ledger.tokens import count_tokens, count_tokens_batch, parse_usage

__all__ = [
    "CostLedger",
    "LedgerEntry",
    "CallEstimate",
    "CallGuard",
    "ledger_scope",
    "current_ledger",
    "bind_context",
    "run_in_ledger_context",
    "LedgerThreadPoolExecutor",
    "Budget",
    "Reservation",
    "Amounts",
    "BudgetStore",
    "MemoryBudgetStore",
    "SQLiteBudgetStore",
    "PriceTable",
    "ModelInfo",
    "estimate_cost",
    "count_tokens",
    "count_tokens_batch",
    "parse_usage",
    "EnergyModel",
    "EnergyEstimate",
    "estimate_energy",
    "LedgerStore",
    "MemoryStore",
    "SQLiteStore",
    "RedisLedgerStore",
    "RedisBudgetStore",
    "RedisBanditStore",
    "StoreUnavailableError",
]
