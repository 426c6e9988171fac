"""The ambient ledger: one :class:`CostLedger` per request, reachable from any stage without passing it.

``with ledger_scope() as ledger:`` stores the ledger in a :class:`contextvars.ContextVar`;
:func:`current_ledger` returns it anywhere below. Nested scopes restore the outer ledger when they end.
Entering a scope also activates the :mod:`~rag_routing.ledger.ambient_hooks` of frameworks already imported:
inside the scope every LangChain model call is metered and budgeted with no handler to attach.

Who sees the ambient ledger:

* **asyncio tasks** created inside the scope (``asyncio.create_task``, ``gather``, ``TaskGroup``) copy the
  context when they are created, so they record into it automatically. So does ``asyncio.to_thread``.
* **threads do not**: a ``threading.Thread`` or a plain ``ThreadPoolExecutor`` (also the default executor of
  ``loop.run_in_executor``) starts with an empty context. Use :class:`LedgerThreadPoolExecutor` (its
  ``submit`` and ``map`` run each task in a copy of the submitter's context), wrap the target with
  :func:`bind_context`, or run it with :func:`run_in_ledger_context`.

Example:
    >>> with ledger_scope() as ledger:
    ...     _ = current_ledger().record("retrieval", "bm25")
    ...     with LedgerThreadPoolExecutor(max_workers=2) as pool:
    ...         _ = list(pool.map(lambda i: current_ledger().record("rerank", "ce"), range(3)))
    >>> len(ledger), current_ledger() is None
    (4, True)
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import ambient_hooks
from rag_routing.ledger.ledger import CostLedger

T = TypeVar("T")

_CURRENT: contextvars.ContextVar[CostLedger | None] = contextvars.ContextVar(
    "rag_routing_current_ledger", default=None
)


@contextmanager
def ledger_scope(ledger: CostLedger | None = None, **kwargs: Any) -> Iterator[CostLedger]:
    """Make ``ledger`` (or a new ``CostLedger(**kwargs)``) the ambient ledger inside the block."""
    if ledger is None:
        ledger = CostLedger(**kwargs)
    elif kwargs:
        raise InvalidInputError("pass either an existing ledger or CostLedger keyword arguments, not both")
    ambient_hooks.activate()  # frameworks already imported meter into the ambient ledger from now on
    token = _CURRENT.set(ledger)
    try:
        yield ledger
    finally:
        _CURRENT.reset(token)


def current_ledger(required: bool = False) -> CostLedger | None:
    """The ambient ledger, or ``None`` (``required=True``: raise if there is none)."""
    ledger = _CURRENT.get()
    if ledger is None and required:
        raise InvalidInputError(
            "no ambient cost ledger: wrap the call in `with ledger_scope():` (threads need "
            "LedgerThreadPoolExecutor, bind_context or run_in_ledger_context to inherit it)"
        )
    return ledger


def budget_left_usd() -> float | None:
    """US $ the ambient ledger's budget has left (limit - spent - reserved); ``None`` without a $ limit.

    Routers use it as the budget B of the shared rule, so they pick what can still be paid for.
    """
    ledger = _CURRENT.get()
    budget = None if ledger is None else ledger.budget
    if budget is None or math.isinf(budget.limits.usd):
        return None
    return budget.remaining().usd


def bind_context(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` bound to a copy of the *current* context (ambient ledger included), e.g. as a thread target.

    Each call runs in its own copy, so the bound function may run in several threads at once.
    """
    context = contextvars.copy_context()

    def bound(*args: Any, **kwargs: Any) -> T:
        return context.copy().run(fn, *args, **kwargs)

    bound.__wrapped__ = fn  # type: ignore[attr-defined]
    return bound


def run_in_ledger_context(fn: Callable[..., T], *args: Any, ledger: CostLedger | None = None, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` with ``ledger`` (default: the current one) ambient, in a fresh context.

    Example (a thread that records into the request's ledger):
        >>> import threading
        >>> ledger = CostLedger()
        >>> t = threading.Thread(target=run_in_ledger_context,
        ...                      args=(lambda: current_ledger().record("embed", "minilm"),), kwargs={"ledger": ledger})
        >>> t.start(); t.join(); len(ledger)
        1
    """
    target = ledger if ledger is not None else _CURRENT.get()
    ambient_hooks.activate()

    def call() -> T:
        _CURRENT.set(target)
        return fn(*args, **kwargs)

    return contextvars.copy_context().run(call)


class LedgerThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in a copy of the submitting thread's context.

    So ``current_ledger()`` inside a task returns the ledger ambient where ``submit`` (or ``map``) was called.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        context = contextvars.copy_context()  # one copy per task: a Context can't be entered twice at once
        return super().submit(context.run, fn, *args, **kwargs)


__all__ = ["ledger_scope", "current_ledger", "budget_left_usd", "bind_context", "run_in_ledger_context",
           "LedgerThreadPoolExecutor"]
