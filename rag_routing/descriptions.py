"""One-line text descriptions of candidate models, for routers that read them (GraphRouter, PromptRouter).

The shipped table (``rag_routing/data/candidate_descriptions.json``) covers the models of the shared routing
data (RouterBench, RouteLLM, RouterDC): provider, family, size, release date and what each model was tuned for,
facts only. Names are matched as the price table matches them: exactly, then case-insensitively without a
provider prefix (``"mistralai/mixtral-8x7b-chat"`` finds ``"mixtral-8x7b-chat"``), then through aliases. Your
own descriptions win over the table.

Example:
    >>> describe("mistralai/Mistral-7B-v0.1").startswith("Mistral AI Mistral 7B v0.1")
    True
    >>> describe("my-model", {"my-model": "a 1B model tuned for SQL"})
    'a 1B model tuned for SQL'
    >>> describe("my-model") is None
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources

from rag_routing.errors import InvalidInputError, MissingDescriptionError


def _bare(name: str) -> str:
    return name.strip().rsplit("/", 1)[-1].lower()


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, str], dict[str, str]]:
    """(canonical name -> description, lower-case bare name or alias -> canonical name)."""
    text = resources.files("rag_routing").joinpath("data", "candidate_descriptions.json").read_text(encoding="utf-8")
    models = json.loads(text)["models"]
    descriptions = {name: str(spec["description"]) for name, spec in models.items()}
    index = {}
    for name, spec in models.items():
        for alias in (name, *spec.get("aliases", ())):
            index[_bare(alias)] = name
    return descriptions, index


def builtin_descriptions() -> dict[str, str]:
    """A copy of the shipped table: canonical model name -> description."""
    return dict(_table()[0])


def describe(name: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The description of ``name``: from ``overrides`` (exact name, then without a provider prefix), else from
    the shipped table; ``None`` when neither knows it."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"candidate name must be a non-empty string, got {name!r}")
    if overrides:
        if name in overrides:
            return _checked(name, overrides[name])
        by_bare = {_bare(k): v for k, v in overrides.items()}
        if _bare(name) in by_bare:
            return _checked(name, by_bare[_bare(name)])
    descriptions, index = _table()
    canonical = index.get(_bare(name))
    return None if canonical is None else descriptions[canonical]


def _checked(name: str, text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"the description of {name!r} must be a non-empty string, got {text!r}")
    return text


def require_descriptions(names: Iterable[str], overrides: Mapping[str, str] | None = None) -> list[str]:
    """The description of every name in ``names``, or :class:`MissingDescriptionError` listing all the names
    that have none."""
    names = list(names)
    found = [describe(n, overrides) for n in names]
    missing = [n for n, d in zip(names, found) if d is None]
    if missing:
        raise MissingDescriptionError(
            f"no description for candidate(s) {missing}; pass descriptions={{name: 'provider, family, size, what it "
            "is tuned for'}} (the shipped table covers the models of the shared RouterBench, RouteLLM and RouterDC "
            "data: rag_routing.descriptions.builtin_descriptions())")
    return [d for d in found if d is not None]


__all__ = ["builtin_descriptions", "describe", "require_descriptions"]
