"""Dynamic batching of routing decisions: concurrent requests share one featurisation and one router call.

Inference servers batch the way this does: the first waiting request opens a batch, which takes whatever else
is queued and waits at most ``max_wait`` seconds (a short, bounded window) for more, up to ``max_batch``;
then one call routes the whole batch (one embedding call for all its queries) and every request gets its own
decision. While a batch runs, new requests queue up for the next one, so under load batches fill by
themselves and at low load a request waits no more than the window. ``workers`` batches run at a time (one per
core by default), so a single batching thread does not leave the other cores idle. Requests are grouped by ``group`` (the
principal, for routers whose guards keep per-principal state), so each group sees its queries in order.
A batch that fails is retried one query at a time, so one bad query fails only its own request.

Example:
    >>> calls = []
    >>> def route_batch(queries, group):
    ...     calls.append(len(queries))
    ...     return [q.upper() for q in queries]
    >>> batcher = RouteBatcher(route_batch, max_batch=8, max_wait=0.05)
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(4) as pool:
    ...     answers = list(pool.map(batcher.route, ["a", "b", "c", "d"]))
    >>> answers, sum(calls) == 4 and len(calls) < 4
    (['A', 'B', 'C', 'D'], True)
    >>> batcher.close()
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from rag_routing.errors import InvalidInputError

logger = logging.getLogger(__name__)
_STOP = object()


class RouteBatcher:
    """Collects concurrent :meth:`route` calls into batches for ``route_batch(queries, group) -> results``.

    Args:
        route_batch: routes a list of queries of one group, returning one result per query, in order.
        max_batch: the most queries in one call.
        max_wait: seconds a batch waits for more requests after its first (0: only what is already queued).
        workers: batches routed at the same time (threads; default: the CPU count, at most 4).
    """

    def __init__(self, route_batch: Callable[[list[str], Any], list[Any]], *, max_batch: int = 64,
                 max_wait: float = 0.002, workers: int | None = None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidInputError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not 0 <= max_wait <= 1:
            raise InvalidInputError(f"max_wait must be between 0 and 1 second, got {max_wait!r}")
        workers = min(4, os.cpu_count() or 1) if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
            raise InvalidInputError(f"workers must be an int in [1, 64], got {workers!r}")
        self.route_batch, self.max_batch, self.max_wait = route_batch, max_batch, float(max_wait)
        self.workers = workers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self.batch_sizes: list[int] = []  # the most recent batches' sizes (bounded), for monitoring and tests

    def route(self, query: str, group: Hashable = None) -> Any:
        """``query``'s result, routed in a batch with whatever else arrives meanwhile (blocks until done)."""
        self._ensure_thread()
        future: Future[Any] = Future()
        self._queue.put((query, group, future))
        return future.result()

    def _ensure_thread(self) -> None:
        if not self._threads:
            with self._start_lock:
                if not self._threads:
                    threads = [threading.Thread(target=self._loop, name=f"rag-routing-batcher-{i}", daemon=True)
                               for i in range(self.workers)]
                    for thread in threads:
                        thread.start()
                    self._threads = threads

    def _collect(self, first: Any) -> list[Any]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                self._queue.put(_STOP)  # handled after this batch
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = self._collect(first)
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            groups: dict[Hashable, list[Any]] = {}
            for item in batch:
                groups.setdefault(item[1], []).append(item)
            for group, items in groups.items():
                self._run(group, items)

    def _run(self, group: Hashable, items: list[Any]) -> None:
        try:
            results = self.route_batch([q for q, _, _ in items], group)
            if len(results) != len(items):
                raise RuntimeError(f"route_batch returned {len(results)} results for {len(items)} queries")
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
            if len(items) == 1:
                items[0][2].set_exception(exc)
                return
            for item in items:  # one bad query must not fail the others
                self._run(group, [item])
            return
        for (_, _, future), result in zip(items, results):
            future.set_result(result)

    def close(self) -> None:
        """Stop the batching threads once the queued requests are routed."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join(timeout=10)


__all__ = ["RouteBatcher"]
