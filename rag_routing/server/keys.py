"""API keys of the HTTP server: bearer token -> principal and that principal's budget limits.

A keys file is JSON: ``{"<token>": {"principal": "team-a", "max_usd": 5.0, "max_tokens": 200000}, ...}``
(a bare string value is a principal without limits). Tokens are kept only as SHA-256 digests in memory and
compared in constant time, so a key table dumped from memory or a timing side channel does not reveal them.

Example:
    >>> keys = load_api_keys({"sk-alice-123": {"principal": "alice", "max_usd": 1.0}, "sk-bob-4567": "bob"})
    >>> keys.lookup("sk-alice-123").principal, keys.lookup("sk-bob-4567").max_usd, keys.lookup("nope")
    ('alice', None, None)
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.json_input import read_json_file

_FIELDS = {"principal", "max_usd", "max_tokens", "max_seconds", "max_kwh"}


@dataclass(frozen=True)
class ApiKey:
    """What a bearer token grants: a principal and its budget limits (``None`` = unlimited)."""

    principal: str
    max_usd: float | None = None
    max_tokens: float | None = None
    max_seconds: float | None = None
    max_kwh: float | None = None

    def limits(self) -> dict[str, float | None]:
        return {"max_usd": self.max_usd, "max_tokens": self.max_tokens, "max_seconds": self.max_seconds,
                "max_kwh": self.max_kwh}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class ApiKeys:
    """Token digests -> :class:`ApiKey`; :meth:`lookup` compares digests in constant time."""

    def __init__(self, keys: Mapping[str, ApiKey]):
        self._keys = {_digest(token): key for token, key in keys.items()}

    def lookup(self, token: str) -> ApiKey | None:
        wanted = _digest(token)
        found = None
        for digest, key in self._keys.items():  # no early exit: the time does not depend on the match
            if hmac.compare_digest(digest, wanted):
                found = key
        return found

    def principals(self) -> list[ApiKey]:
        return list(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


def _limit(token_label: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise InvalidInputError(f"API key {token_label}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def load_api_keys(source: str | Path | Mapping[str, Any]) -> ApiKeys:
    """Keys from a JSON file path or a mapping (see the module docstring); a malformed entry is an error."""
    if isinstance(source, (str, Path)):
        data = read_json_file(source, f"the API keys file {str(source)!r}", error=InvalidInputError)
    else:
        data = source
    if not isinstance(data, Mapping) or not data:
        raise InvalidInputError("API keys must be a non-empty JSON object {token: {principal, max_usd, ...}}")
    keys: dict[str, ApiKey] = {}
    for i, (token, spec) in enumerate(data.items()):
        label = f"#{i}"  # never echo a token in an error message
        if isinstance(token, ApiKey):
            raise InvalidInputError("map tokens to key specs, not ApiKey objects to tokens")
        if not isinstance(token, str) or len(token) < 8 or not token.isprintable() or " " in token:
            raise InvalidInputError(f"API key {label}: a token must be a printable string of 8+ characters "
                                    "without spaces")
        if isinstance(spec, ApiKey):
            keys[token] = spec
            continue
        if isinstance(spec, str):
            spec = {"principal": spec}
        if not isinstance(spec, Mapping) or not isinstance(spec.get("principal"), str) or not spec["principal"]:
            raise InvalidInputError(f"API key {label}: needs a non-empty 'principal'")
        unknown = set(spec) - _FIELDS
        if unknown:
            raise InvalidInputError(f"API key {label}: unknown fields {sorted(unknown)}; allowed {sorted(_FIELDS)}")
        keys[token] = ApiKey(spec["principal"], *(_limit(label, n, spec.get(n))
                                                  for n in ("max_usd", "max_tokens", "max_seconds", "max_kwh")))
    return ApiKeys(keys)


__all__ = ["ApiKey", "ApiKeys", "load_api_keys"]
