"""Which models a loaded file may name: a saved router's featurizer says which embedding model to load at its
first route, and a file can say anything (``/etc``, ``../../somewhere``, a hub id that would be downloaded).

Only the packaged default (``all-MiniLM-L6-v2``, shipped offline) is allowed unless the caller names more models
explicitly at load time: ``Router.load(path, allowed_models=["my-org/my-embedder", "/models/e5"])``. A path is
allowed when it resolves to the same place as an allowed path. Anything else is a
:class:`~rag_routing.errors.ModelNotAllowedError`, raised while the file is read, before any model is loaded.

Example:
    >>> check_model_allowed("all-MiniLM-L6-v2", "router.npz")
    'all-MiniLM-L6-v2'
    >>> with allow_models(["/models/e5"]):
    ...     check_model_allowed("/models/../models/e5", "router.npz")
    '/models/../models/e5'
    >>> check_model_allowed("../../etc", "router.npz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rag_routing.errors.ModelNotAllowedError: router.npz names the model '../../etc', which was not allowed: ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from rag_routing.errors import InvalidInputError, ModelNotAllowedError

#: Models a loaded file may always name (the offline default embedder, under both of its names).
PACKAGED_MODELS = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})

_ALLOWED: ContextVar[tuple[str, ...]] = ContextVar("rag_routing_allowed_models", default=())


def _as_names(models: Iterable[str] | None) -> tuple[str, ...]:
    if models is None:
        return ()
    if isinstance(models, str):
        models = [models]
    names = tuple(models)
    if not all(isinstance(m, str) and m for m in names):
        raise InvalidInputError(f"allowed_models must be a list of model names or paths, got {names!r}")
    return names


@contextmanager
def allow_models(models: Iterable[str] | None) -> Iterator[tuple[str, ...]]:
    """While the block runs (this thread / task), files may also name ``models`` (names or paths)."""
    names = _as_names(models)
    token = _ALLOWED.set(_ALLOWED.get() + names)
    try:
        yield names
    finally:
        _ALLOWED.reset(token)


def _resolved(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def check_model_allowed(name: object, where: str) -> str:
    """``name`` if a loaded file may name it (module docstring); :class:`ModelNotAllowedError` otherwise."""
    if not isinstance(name, str) or not name:
        raise ModelNotAllowedError(f"{where} names a model that is not a string: {name!r}")
    allowed = _ALLOWED.get()
    if name in PACKAGED_MODELS or name in allowed:
        return name
    if any(_resolved(name) == _resolved(other) for other in allowed):
        return name
    raise ModelNotAllowedError(
        f"{where} names the model {name!r}, which was not allowed: only the packaged default "
        f"('all-MiniLM-L6-v2') loads from a file unless you pass it explicitly, e.g. "
        f"load(path, allowed_models=[{name!r}])")


__all__ = ["PACKAGED_MODELS", "allow_models", "check_model_allowed"]
