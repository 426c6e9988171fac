"""The ambient LangChain meter: inside ``ledger_scope`` every chat model / LLM run is budgeted and recorded.

:func:`install` registers one :class:`AmbientLedgerHandler` with LangChain's own extension point for handlers
scoped to a context variable (``langchain_core.tracers.context.register_configure_hook``, the mechanism of
``get_usage_metadata_callback``): every callback manager LangChain configures from then on carries it, so every
model run, at any depth of any chain, in threads (``batch``) and asyncio tasks alike, reaches it. The handler
does nothing unless a ledger is ambient when the run starts (``ledger_scope``), so installing it is harmless.

You never call :func:`install` yourself: :func:`~rag_routing.ledger.scope.ledger_scope` activates it through
:mod:`rag_routing.ledger.ambient_hooks` when ``langchain_core`` is imported, and importing
``rag_routing.integrations.langchain`` does too. A hand-attached
:class:`~rag_routing.integrations.langchain.callbacks.LedgerCallbackHandler` takes a run over from the ambient
one (one entry per run and ledger).

Example:
    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> from rag_routing.ledger import ledger_scope
    >>> reply = AIMessage("Paris", usage_metadata={"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500},
    ...                   response_metadata={"model_name": "gpt-4o-mini"})
    >>> with ledger_scope() as ledger:                       # no callbacks= anywhere
    ...     _ = GenericFakeChatModel(messages=iter([reply])).invoke("Capital of France?")
    >>> e = ledger.entries[0]
    >>> e.model, e.input_tokens, round(e.cost_usd, 6), is_installed()
    ('gpt-4o-mini', 1000, 0.00045, True)
"""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar

from langchain_core.tracers.context import register_configure_hook

from rag_routing.integrations.langchain.callbacks import LedgerCallbackHandler


class AmbientLedgerHandler(LedgerCallbackHandler):
    """The handler :func:`install` adds to every LangChain run: records into the ambient ledger only."""

    ambient = True

    def __init__(self) -> None:
        super().__init__(None)


_HANDLER = AmbientLedgerHandler()
# The default value makes the handler present in every context (threads started without a copied context
# included); it acts only where a ledger is ambient.
_VAR: ContextVar[LedgerCallbackHandler | None] = ContextVar("rag_routing_ambient_ledger_handler", default=_HANDLER)
_INSTALLED = False
_LOCK = threading.Lock()
_RAISED_TO_CALLER = ("BudgetExceededError(", "UnknownPriceError(")
_OUR_HANDLERS = ("LedgerCallbackHandler", "AmbientLedgerHandler")


class _RefusalLogFilter(logging.Filter):
    """Drop LangChain's "Error in <handler> callback" warning for a refusal our handler raises to the caller
    anyway (``raise_error = True``): the caller gets the exception, the log gets no duplicate of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (len(args) == 3 and isinstance(args[0], str) and args[0] in _OUR_HANDLERS
                    and isinstance(args[2], str) and args[2].startswith(_RAISED_TO_CALLER))


def install() -> None:
    """Register the ambient handler with LangChain (idempotent, thread-safe)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        # handle_class=None: LangChain adds this very instance unless it is already there; a hand-attached
        # LedgerCallbackHandler for another ledger must not hide it.
        register_configure_hook(_VAR, inheritable=True)
        logging.getLogger("langchain_core.callbacks.manager").addFilter(_RefusalLogFilter())
        _INSTALLED = True


def is_installed() -> bool:
    """Whether LangChain runs carry the ambient handler in this process."""
    return _INSTALLED


def ambient_handler() -> AmbientLedgerHandler:
    """The one ambient handler instance (e.g. to check ``open_runs`` in a leak test)."""
    return _HANDLER


__all__ = ["AmbientLedgerHandler", "install", "is_installed", "ambient_handler"]
