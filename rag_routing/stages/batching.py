"""``batch`` / ``abatch`` for anything with ``invoke`` / ``ainvoke`` (every stage and :class:`RoutedRAG`).

``batch`` runs in order, in threads that share the caller's ambient ledger when ``max_concurrency`` > 1;
``abatch`` runs concurrently on the event loop, at most ``max_concurrency`` at once, answers in input order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from rag_routing.feature_prefetch import using_memo
from rag_routing.ledger.scope import LedgerThreadPoolExecutor


class Batchable:
    """Mixin: :meth:`batch` and :meth:`abatch` from the class's own ``invoke`` and ``ainvoke``."""

    def batch(self, states: Sequence[Any], *, max_concurrency: int | None = None) -> list[Any]:
        """:meth:`invoke` for many states, in order (threads sharing the caller's ledger when
        ``max_concurrency`` > 1)."""
        items = list(states)
        with using_memo(self._batch_memo(items)):  # the batch's queries embedded in one call
            if not max_concurrency or max_concurrency <= 1 or len(items) <= 1:
                return [self.invoke(s) for s in items]  # type: ignore[attr-defined]
            with LedgerThreadPoolExecutor(max_workers=max_concurrency) as pool:
                return list(pool.map(self.invoke, items))  # type: ignore[attr-defined]

    async def abatch(self, states: Sequence[Any], *, max_concurrency: int | None = None) -> list[Any]:
        """:meth:`ainvoke` for many states concurrently (at most ``max_concurrency`` at once), in order."""
        limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None

        async def one(s: Any) -> Any:
            if limit is None:
                return await self.ainvoke(s)  # type: ignore[attr-defined]
            async with limit:
                return await self.ainvoke(s)  # type: ignore[attr-defined]

        items = list(states)
        memo = await asyncio.to_thread(self._batch_memo, items)
        with using_memo(memo):
            return list(await asyncio.gather(*(one(s) for s in items)))

    def _batch_memo(self, states: list[Any]) -> Any:
        """Vectors of the batch's routing queries from one embedding call (see
        :mod:`rag_routing.feature_prefetch`), or ``None``; stages with a router override it."""
        return None


__all__ = ["Batchable"]
