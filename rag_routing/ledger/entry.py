"""One line of the cost ledger: what one call of one component cost.

A plain slotted, frozen dataclass (no pydantic) so that building one costs about a microsecond.

Example:
    >>> e = LedgerEntry(stage="generation", component="gpt-4o", model="gpt-4o", input_tokens=10, cost_usd=0.1)
    >>> LedgerEntry.from_dict(e.to_dict()) == e
    True
"""

from __future__ import annotations

import math
import numbers
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rag_routing.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What one call cost.

    Attributes:
        stage: the stage ("generation", "retrieval", "indexing", "embedding", "routing", "judge" are the
            library's own, see :mod:`rag_routing.ledger.stage_names`; any name of yours works).
        component: what ran (a candidate name, "bm25", "knn-router", ...).
        model: the model id used for prices and energy, if any.
        input_tokens, output_tokens: token counts (provider-reported, or estimated when ``estimated``).
        cost_usd: US $ of the call.
        seconds: wall-clock seconds.
        energy_kwh, emissions_gco2e: estimated energy and emissions; ``None`` = unknown (model size unknown).
        decision_id: id of the routing decision that chose this call, if any.
        timestamp: seconds since the epoch (UTC) when the entry was recorded.
        principal: the user / API key the call was made for, if known.
        metadata: free JSON-able details.
        estimated: True when tokens were counted or guessed rather than reported by the provider.
        priced: False when the model had no known price and ``allow_unpriced`` made the cost 0.
        entry_id: unique id (``<ledger id>:<sequence>`` from a ledger, a random hex otherwise); stores use
            it to skip an entry written twice.
    """

    stage: str
    component: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    energy_kwh: float | None = None
    emissions_gco2e: float | None = None
    decision_id: str | None = None
    timestamp: float = field(default_factory=time.time)
    principal: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    estimated: bool = False
    priced: bool = True
    entry_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Rebuild (and validate) an entry from :meth:`to_dict` output."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown ledger entry fields: {sorted(unknown)}")
        values = dict(data)
        for name in ("stage", "component"):
            if not isinstance(values.get(name), str) or not values[name]:
                raise InvalidInputError(f"ledger entry needs a non-empty {name!r}")
        (values["input_tokens"], values["output_tokens"], values["cost_usd"], values["seconds"],
         values["energy_kwh"], values["emissions_gco2e"]) = normalize_numbers(
            values.get("input_tokens", 0), values.get("output_tokens", 0), values.get("cost_usd", 0.0),
            values.get("seconds", 0.0), values.get("energy_kwh"), values.get("emissions_gco2e"))
        if not isinstance(values.get("metadata", {}), Mapping):
            raise InvalidInputError("ledger entry metadata must be a mapping")
        return cls(**values)


ENTRY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LedgerEntry))


def normalize_numbers(input_tokens: Any, output_tokens: Any, cost_usd: Any, seconds: Any, energy_kwh: Any,
                      emissions_gco2e: Any) -> tuple[int, int, float, float, float | None, float | None]:
    """The amounts as plain ints/floats; :class:`InvalidInputError` for negative, NaN or non-numeric ones."""
    if type(input_tokens) is not int or input_tokens < 0:
        input_tokens = _count(input_tokens, "input_tokens")
    if type(output_tokens) is not int or output_tokens < 0:
        output_tokens = _count(output_tokens, "output_tokens")
    if not (type(cost_usd) is float and 0.0 <= cost_usd < math.inf):
        cost_usd = _amount(cost_usd, "cost_usd")
    if not (type(seconds) is float and 0.0 <= seconds < math.inf):
        seconds = _amount(seconds, "seconds")
    if energy_kwh is not None and not (type(energy_kwh) is float and 0.0 <= energy_kwh < math.inf):
        energy_kwh = _amount(energy_kwh, "energy_kwh")
    if emissions_gco2e is not None and not (type(emissions_gco2e) is float and 0.0 <= emissions_gco2e < math.inf):
        emissions_gco2e = _amount(emissions_gco2e, "emissions_gco2e")
    return input_tokens, output_tokens, cost_usd, seconds, energy_kwh, emissions_gco2e


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not hasattr(type(value), "__index__") or value < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _amount(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


__all__ = ["LedgerEntry", "ENTRY_FIELDS", "normalize_numbers"]
