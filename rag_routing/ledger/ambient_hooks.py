"""Ambient hooks: framework integrations that meter and budget calls inside ``ledger_scope`` with no handler.

The ledger is framework-free, so it cannot import LangChain or LlamaIndex. Instead an integration registers an
*installer* here under the name of the framework module it needs (``"langchain_core"``, ``"llama_index.core"``),
as a ``"package.module:function"`` path that is imported only when needed. :func:`activate` (called by
:func:`~rag_routing.ledger.scope.ledger_scope` and :func:`~rag_routing.ledger.scope.run_in_ledger_context`)
runs, once per process, the installer of every registered framework that is already imported
(``name in sys.modules``): a framework the program never imported is never imported by us. An installer hooks
the framework's own extension point (LangChain: ``register_configure_hook``) so that every later call of that
framework reports to the ambient ledger.

Installing is idempotent and thread-safe; once every registered hook ran, :func:`activate` is a dictionary
look-up. A framework imported *after* the first ``ledger_scope`` is picked up by the next ``ledger_scope`` (or
by importing the integration package, which activates its own hook).

Example:
    >>> calls = []
    >>> register_ambient_hook("sys", lambda: calls.append("installed"))   # "sys" is always imported
    >>> activate(); activate()
    >>> calls, is_installed("sys")
    (['installed'], True)
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable

from rag_routing.errors import InvalidInputError

Installer = str | Callable[[], None]

_REGISTERED: dict[str, list[Installer]] = {}
_PENDING: dict[str, list[Installer]] = {}
_INSTALLED: set[str] = set()
_LOCK = threading.Lock()


def register_ambient_hook(module_name: str, installer: Installer) -> None:
    """Run ``installer`` once ``module_name`` is imported and a ledger scope is entered.

    Args:
        module_name: the framework module whose presence in ``sys.modules`` activates the hook.
        installer: a zero-argument callable, or a ``"package.module:function"`` path imported lazily (keeps
            the core free of framework imports).
    """
    if not isinstance(module_name, str) or not module_name:
        raise InvalidInputError(f"module_name must be a non-empty module name, got {module_name!r}")
    if not callable(installer) and not (isinstance(installer, str) and ":" in installer):
        raise InvalidInputError(f"installer must be a callable or 'package.module:function', got {installer!r}")
    with _LOCK:
        _REGISTERED.setdefault(module_name, []).append(installer)
        _PENDING.setdefault(module_name, []).append(installer)


def activate() -> None:
    """Install the hooks of every registered framework already imported (each once per process)."""
    if not _PENDING:
        return
    ready = [name for name in list(_PENDING) if name in sys.modules]
    if not ready:
        return
    with _LOCK:
        todo = [(name, _PENDING.pop(name)) for name in ready if name in _PENDING]
    for name, installers in todo:
        try:
            for installer in installers:
                _load(installer)()
        except BaseException:
            with _LOCK:  # try again at the next activation rather than metering nothing silently
                _PENDING.setdefault(name, []).extend(installers)
            raise
        with _LOCK:
            _INSTALLED.add(name)


def is_installed(module_name: str) -> bool:
    """Whether the hooks registered for ``module_name`` ran."""
    return module_name in _INSTALLED


def registered() -> dict[str, int]:
    """``{module name: number of installers}`` registered so far."""
    with _LOCK:
        return {name: len(installers) for name, installers in _REGISTERED.items()}


def _load(installer: Installer) -> Callable[[], None]:
    if callable(installer):
        return installer
    module_name, _, attr = installer.partition(":")
    return getattr(importlib.import_module(module_name), attr)


# The integrations shipped with rag_routing (imported only when their framework already is).
register_ambient_hook("langchain_core", "rag_routing.integrations.langchain.ambient:install")
register_ambient_hook("llama_index.core", "rag_routing.integrations.llamaindex.budget_gate:install")


__all__ = ["register_ambient_hook", "activate", "is_installed", "registered"]
