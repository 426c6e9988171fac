"""Lazy public names for packages (PEP 562): a name is imported from its module on first access.

Keeps ``import rag_routing`` (and its subpackages) light: frameworks and heavy libraries load only when a name
that needs them is used.

Example:
    >>> import types
    >>> module = types.ModuleType("demo_pkg")
    >>> import sys; sys.modules["demo_pkg"] = module
    >>> module.__getattr__, module.__dir__ = lazy_exports("demo_pkg", {"sqrt": "math"})
    >>> module.sqrt(9.0)
    3.0
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` resolving each name of ``exports`` (name -> module) lazily."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # cache: the next access skips __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
