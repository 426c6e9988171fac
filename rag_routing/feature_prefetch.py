"""Embed a batch once: a context in which a router's featurizer has already computed the batch's vectors.

Callers that route many queries one at a time (``RouterRunnable.batch``, a stage's ``batch``) open
:func:`prefetched_features` with all the queries first: the featurizer encodes them in one call and keeps the
vectors in a context-local memo, so each later ``route_one`` reads its vector from the memo instead of running
the model again. The memo lives in a :class:`contextvars.ContextVar`, so it follows the batch into the threads
and tasks LangChain starts (they copy the context) and never leaks into other requests.

Only featurizers that declare ``supports_prefetch = True`` (the MiniLM embedders, whose cost is the model call)
take part; for the others the context does nothing.

Example:
    >>> from rag_routing.embeddings import TfidfFeaturizer
    >>> with prefetched_features(TfidfFeaturizer(), ["a query"]):   # TF-IDF is cheap: nothing to prefetch
    ...     pass
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

_memo: ContextVar[dict[tuple[str, str], np.ndarray] | None] = ContextVar("rag_routing_feature_memo", default=None)


def active_memo() -> dict[tuple[str, str], np.ndarray] | None:
    """The memo of the batch being routed in this context (``(model key, text) -> vector``), if any."""
    return _memo.get()


def compute_memo(router_or_featurizer: Any, texts: Sequence[Any]) -> dict[tuple[str, str], np.ndarray] | None:
    """Embed ``texts`` with the featurizer of ``router_or_featurizer`` (a fitted router's ``featurizer_``, or a
    featurizer) in one call; the memo for :func:`using_memo`, or ``None`` when there is nothing to prefetch.
    Texts that are not non-empty strings are left to the per-item call, which reports them."""
    featurizer = getattr(router_or_featurizer, "featurizer_", router_or_featurizer)
    usable = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    if not getattr(featurizer, "supports_prefetch", False) or len(usable) < 2 or _memo.get() is not None:
        return None
    token = _memo.set({})
    try:
        featurizer.transform(usable)  # fills the memo (see rag_routing.embeddings._cached_transform)
        return _memo.get()
    finally:
        _memo.reset(token)


@contextlib.contextmanager
def using_memo(memo: dict[tuple[str, str], np.ndarray] | None) -> Iterator[None]:
    """Within the block, featurizers answer from ``memo`` (from :func:`compute_memo`); ``None`` does nothing."""
    if memo is None:
        yield
        return
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


@contextlib.contextmanager
def prefetched_features(router_or_featurizer: Any, texts: Sequence[Any]) -> Iterator[None]:
    """:func:`compute_memo` then :func:`using_memo`: within the block, the featurizer answers ``texts`` from one
    batched encode."""
    with using_memo(compute_memo(router_or_featurizer, texts)):
        yield


__all__ = ["prefetched_features", "compute_memo", "using_memo", "active_memo"]
