"""Typed errors raised by rag_routing.

Every error says what happened and what to do next. All inherit from :class:`RagRoutingError`, and
input errors also inherit from :class:`ValueError` so generic handlers keep working.
"""

from __future__ import annotations


class RagRoutingError(Exception):
    """Base class of every error raised by rag_routing."""


class InvalidInputError(RagRoutingError, ValueError):
    """An argument is malformed: empty query, NaN score, shape mismatch, negative price, ..."""


class UnknownCandidateError(InvalidInputError):
    """A candidate name (or index) that is not in the pool."""


class DatasetFormatError(InvalidInputError):
    """A data file cannot be read as the requested routing-dataset format."""


class MissingDescriptionError(InvalidInputError):
    """A router that reads candidate descriptions (GraphRouter) was given a candidate without one."""


class NotFittedError(RagRoutingError, RuntimeError):
    """A learned router (or featurizer) was used before ``fit``."""


class NoRouteError(RagRoutingError):
    """No candidate satisfies the constraints (budget) for a query and no fallback was declared."""


class BudgetExceededError(RagRoutingError):
    """A call would exceed a :class:`~rag_routing.ledger.budget.Budget`; it was refused before it ran."""


class UnknownPriceError(RagRoutingError, LookupError):
    """No price is known for a model; pass ``Pricing(...)`` or opt into zero with ``allow_unpriced=True``."""


class JudgeReplyError(RagRoutingError):
    """A judge model's reply could not be read as a score (and no fallback score was declared)."""


class CorruptStateError(RagRoutingError):
    """A saved router, ledger or cache file is unreadable, truncated or was tampered with."""


class ModelNotAllowedError(CorruptStateError):
    """A loaded file names a model (a path or hub id) the caller did not allow; nothing was loaded. Pass it
    explicitly, e.g. ``Router.load(path, allowed_models=[...])``, if you trust it."""


class MissingDependencyError(RagRoutingError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class SandboxUnavailableError(RagRoutingError, RuntimeError):
    """Judged code would run without OS-level isolation (bubblewrap missing or user namespaces refused); it was
    refused. Install bubblewrap, or opt in by name with ``isolation="none-i-accept-the-risk"``."""


class StoreBusyError(RagRoutingError, TimeoutError):
    """A store (a SQLite file) stayed locked by another writer for its whole timeout; nothing was written,
    so the operation can be retried as is (or open the store with a longer ``timeout``)."""


class StateLostError(CorruptStateError):
    """A shared store lost state it held (e.g. Redis restarted without persistence): its amounts are unknown,
    so the budget or ledger is not silently reset to zero; check the store and re-create the state explicitly."""


class DuplicateEntryError(RagRoutingError):
    """A ledger entry id is already stored with different content; the new entry was not written (ids must be
    unique, and a true duplicate is never dropped silently)."""


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is required for this feature; install it with: pip install 'rag-routing[{extra}]'"
        ) from exc


__all__ = [
    "RagRoutingError",
    "InvalidInputError",
    "UnknownCandidateError",
    "DatasetFormatError",
    "MissingDescriptionError",
    "NotFittedError",
    "NoRouteError",
    "BudgetExceededError",
    "UnknownPriceError",
    "CorruptStateError",
    "JudgeReplyError",
    "MissingDependencyError",
    "SandboxUnavailableError",
    "ModelNotAllowedError",
    "StoreBusyError",
    "StateLostError",
    "DuplicateEntryError",
    "require",
]
