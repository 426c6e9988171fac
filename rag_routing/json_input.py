"""Parse JSON that came from a file (price tables, key files, JSONL datasets, saved state): every failure is a
typed error that names the source, never a raw ``JSONDecodeError``, ``RecursionError`` or ``UnicodeDecodeError``.

Nesting is limited to :data:`MAX_JSON_DEPTH` levels (no file this library reads needs more): JSON nested a
thousand levels deep would otherwise exhaust the interpreter's recursion limit in the parser, or in whatever walks
the parsed value later.

Example:
    >>> parse_json('{"gpt-4o": {"input": 2.5}}', "prices.json")
    {'gpt-4o': {'input': 2.5}}
    >>> parse_json("[" * 5000 + "]" * 5000, "prices.json")
    Traceback (most recent call last):
    ...
    rag_routing.errors.DatasetFormatError: prices.json: JSON nested deeper than 64 levels
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag_routing.errors import DatasetFormatError, RagRoutingError

#: Deepest nesting of arrays and objects accepted.
MAX_JSON_DEPTH = 64


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _prefix_depth(text: str, limit: int) -> bool:
    """Cheap pre-check: does the text open more than ``limit`` brackets before closing one (outside strings)?"""
    head = text.lstrip()[: limit + 2]
    return len(head) > limit and all(c in "[{ \t\r\n" for c in head[: limit + 1])


def parse_json(text: str | bytes, where: str, *, error: type[RagRoutingError] = DatasetFormatError,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)``, or ``error`` (a rag_routing error class) naming ``where`` when the text is not JSON,
    not UTF-8, or nested deeper than ``max_depth``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if _prefix_depth(text, max_depth):
            raise error(f"{where}: JSON nested deeper than {max_depth} levels")
        value = json.loads(text)
    except RecursionError as exc:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels") from exc
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if isinstance(exc, RagRoutingError):
            raise
        raise error(f"{where}: not valid JSON ({exc})") from exc
    if _too_deep(value, max_depth):
        raise error(f"{where}: JSON nested deeper than {max_depth} levels")
    return value


def read_json_file(path: str | Path, where: str | None = None, *,
                   error: type[RagRoutingError] = DatasetFormatError) -> Any:
    """The JSON document in ``path``; a missing or unreadable file is ``error`` too."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"{where or path}: cannot read the file ({type(exc).__name__}: {exc})") from exc
    return parse_json(data, str(where or path), error=error)


__all__ = ["parse_json", "read_json_file", "MAX_JSON_DEPTH"]
