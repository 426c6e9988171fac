"""Candidates a router can pick, their prices, and a pool with unique names.

A :class:`Candidate` is anything a router can choose: an LLM, a retriever, a prompt, a whole chain. Its
:class:`Pricing` holds US $ per one million input and output tokens. An unknown price is never a silent
zero: leave ``pricing=None`` and the ledger's price table is consulted, which raises
:class:`~rag_routing.errors.UnknownPriceError` unless the model is listed or ``allow_unpriced=True``.

Example:
    >>> pool = CandidatePool([
    ...     Candidate(name="small", pricing=Pricing(input_per_mtok=0.15, output_per_mtok=0.6)),
    ...     Candidate(name="large", pricing=Pricing(input_per_mtok=2.5, output_per_mtok=10.0)),
    ... ])
    >>> pool.index("large")
    1
    >>> round(pool["small"].pricing.cost(1000, 500), 6)
    0.00045
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag_routing.errors import InvalidInputError, UnknownCandidateError


class Pricing(BaseModel):
    """US $ per one million input and output tokens (and optionally a flat fee per call)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0.0)
    output_per_mtok: float = Field(ge=0.0)
    per_call: float = Field(default=0.0, ge=0.0)

    @field_validator("input_per_mtok", "output_per_mtok", "per_call", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and (not math.isfinite(value) or value < 0):
            raise InvalidInputError(f"price must be a finite number >= 0, got {value!r}")
        return value

    def cost(self, input_tokens: int | float, output_tokens: int | float = 0) -> float:
        """US $ of one call with the given token counts."""
        return (
            input_tokens * self.input_per_mtok / 1e6 + output_tokens * self.output_per_mtok / 1e6 + self.per_call
        )


class Candidate(BaseModel):
    """One option a router can choose.

    Attributes:
        name: unique name within a pool (used by routers, datasets and the ledger).
        target: the thing to run (a chat model, retriever, chain, callable); not serialised.
        pricing: explicit prices; ``None`` means "look the model up in the price table".
        model: the model id used for price and energy look-ups; defaults to ``name``.
        params_billion: model size for energy estimates (active parameters, billions).
        description: free text, used by LLM-as-router and graph routers.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str
    target: Any = Field(default=None, exclude=True, repr=False)
    pricing: Pricing | None = None
    model: str | None = None
    params_billion: float | None = Field(default=None, gt=0.0)
    description: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value or not value.strip():
            raise InvalidInputError("candidate name must be a non-empty string")
        return value

    @property
    def model_id(self) -> str:
        """The id used for price and energy look-ups."""
        return self.model or self.name


class CandidatePool(Sequence[Candidate]):
    """An ordered collection of candidates with unique names.

    Accepts :class:`Candidate` objects or bare names.
    """

    def __init__(self, candidates: Iterable[Candidate | str]):
        items = [c if isinstance(c, Candidate) else Candidate(name=str(c)) for c in candidates]
        if not items:
            raise InvalidInputError("a candidate pool needs at least one candidate")
        names = [c.name for c in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInputError(f"candidate names must be unique; duplicated: {duplicates}")
        self._items = items
        self._index = {n: i for i, n in enumerate(names)}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._items]

    def index(self, name: str, *args: Any) -> int:  # type: ignore[override]
        """Position of the candidate called ``name``."""
        try:
            return self._index[name]
        except KeyError:
            raise UnknownCandidateError(
                f"unknown candidate {name!r}; known candidates: {self.names}"
            ) from None

    def __contains__(self, item: object) -> bool:
        name = item.name if isinstance(item, Candidate) else item
        return name in self._index

    def __getitem__(self, key: int | str) -> Candidate:  # type: ignore[override]
        if isinstance(key, str):
            return self._items[self.index(key)]
        if not -len(self._items) <= key < len(self._items):
            raise UnknownCandidateError(f"candidate index {key} out of range for {len(self._items)} candidates")
        return self._items[key]

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"CandidatePool({self.names})"

    def with_candidate(self, candidate: Candidate | str) -> CandidatePool:
        """A new pool with ``candidate`` appended."""
        return CandidatePool([*self._items, candidate])

    def without(self, name: str) -> CandidatePool:
        """A new pool without the candidate called ``name``."""
        self.index(name)
        return CandidatePool([c for c in self._items if c.name != name])


__all__ = ["Pricing", "Candidate", "CandidatePool"]
