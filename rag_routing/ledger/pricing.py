"""Price table: US $ per 1M input and output tokens — overrides, then genai-prices, then the shipped JSON.

Where a price comes from, most specific first (:attr:`ModelInfo.priced_by` names it, and every ledger entry
carries it as ``metadata["price_source"]``):

1. a candidate's own ``Pricing`` (passed with the call) — ``"candidate"``;
2. :meth:`PriceTable.override` / :meth:`~PriceTable.with_overrides` — ``"override"``;
3. the maintained database genai-prices (:mod:`~rag_routing.ledger.maintained_prices`; optional, offline,
   updated monthly) — ``"genai-prices <version>"``; local models, and open-weight models the shipped table
   prices at a third-party host (Together / Anyscale, as RouterBench-style cost matrices do), keep the
   shipped price;
4. the shipped table — ``"shipped <as_of>"``: the offline fallback, and all there is without genai-prices.

The shipped table (``rag_routing/data/prices.json``) carries its date (``as_of``) and where each price comes
from. Look-ups are case-insensitive and tolerate provider prefixes (``openai/gpt-4o``, ``openai:gpt-4o``),
dated snapshots (``gpt-4o-2024-08-06``, ``claude-3-5-sonnet-20241022``) and ``-latest``. An unknown model is an
error, never a silent zero: pass ``Pricing(...)`` or ``allow_unpriced=True``.

Example:
    >>> table = PriceTable.default()
    >>> table.get("openai/gpt-4o-2024-08-06").output_per_mtok
    10.0
    >>> round(estimate_cost("gpt-4o-mini", 1000, 500), 6)
    0.00045
    >>> table.with_overrides({"my-llm": Pricing(input_per_mtok=1, output_per_mtok=2)}).get("my-llm").input_per_mtok
    1.0
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rag_routing.candidates import Pricing
from rag_routing.errors import CorruptStateError, InvalidInputError, UnknownPriceError
from rag_routing.json_input import read_json_file

ZERO_PRICE = Pricing(input_per_mtok=0.0, output_per_mtok=0.0)

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-latest)$")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the price table knows about one model."""

    name: str
    pricing: Pricing
    provider: str | None = None
    source: str | None = None
    local: bool = False
    params_billion: float | None = None
    total_params_billion: float | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    #: Which source priced it: "override", "genai-prices <version>", "shipped <as_of>" or "table".
    priced_by: str = "table"


def _key(model: str) -> str:
    return model.strip().lower()


def _bare(key: str) -> str:
    """``key`` without its provider prefix: "openai/gpt-4o", "openai:gpt-4o", "anthropic.claude-v2"."""
    bare = key.rsplit("/", 1)[-1]
    if ":" in bare and not bare.rsplit(":", 1)[-1].isdigit():  # "openai:gpt-4o", not "claude-v2:1"
        bare = bare.split(":", 1)[1]
    for prefix in ("anthropic.", "meta.", "mistral.", "cohere."):  # Bedrock ids
        if bare.startswith(prefix):
            bare = bare[len(prefix):]
    return bare


def _candidate_keys(model: str) -> Iterator[str]:
    """Normalised keys to try, most specific first."""
    key = _key(model)
    yield key
    bare = _bare(key)
    if bare != key:
        yield bare
    undated = _DATE_SUFFIX.sub("", bare)
    if undated != bare:
        yield undated
    if bare.endswith("-v1:0"):  # Bedrock versions: "claude-3-haiku-20240307-v1:0"
        yield _DATE_SUFFIX.sub("", bare[: -len("-v1:0")])


class PriceTable:
    """Model name -> :class:`~rag_routing.candidates.Pricing` (and size, for energy estimates).

    Args:
        models: ``{name: ModelInfo}``.
        as_of: the date the prices were read.
        sources: provider -> where its prices come from.

    Use :meth:`default` for the shipped table; :meth:`override` changes this table in place,
    :meth:`with_overrides` returns a changed copy.
    """

    def __init__(self, models: Mapping[str, ModelInfo] | None = None, *, as_of: str | None = None,
                 sources: Mapping[str, str] | None = None, maintained: bool = False):
        self.as_of = as_of
        self.sources = dict(sources or {})
        #: Consult genai-prices (if installed) before the table's own, non-overridden, non-local entries.
        self.maintained = maintained
        self._models: dict[str, ModelInfo] = {}
        self._index: dict[str, str] = {}
        self._memo: dict[str, str] = {}  # model id as given -> entry name ("" = unknown)
        self._resolved: dict[str, ModelInfo | None] = {}  # model id as given -> what find() returns
        self._overridden: set[str] = set()
        for info in (models or {}).values():
            self._add(info)

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def default(cls, *, maintained: bool = True) -> PriceTable:
        """A fresh copy of the shipped table backed by genai-prices (``maintained=False``: the shipped prices
        only); overriding it never changes anyone else's table."""
        data = _shipped_data()
        table = cls.from_dict(data, priced_by=f"shipped {data.get('as_of')}")
        table.maintained = maintained
        return table

    @classmethod
    def from_json(cls, path: str | Path) -> PriceTable:
        """Load a table in the shipped format (``{"as_of": ..., "models": {name: {"input":, "output":}}}``)."""
        data = read_json_file(path, f"price table {str(path)!r}", error=CorruptStateError)
        if not isinstance(data, Mapping):
            raise CorruptStateError(f"price table {str(path)!r} is not a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, priced_by: str = "table") -> PriceTable:
        """Build a table from the parsed JSON format (its own prices only: ``maintained=False``)."""
        models = data.get("models")
        if not isinstance(models, Mapping):
            raise InvalidInputError("a price table needs a 'models' mapping: {name: {'input': .., 'output': ..}}")
        infos = {name: replace(_info_from_json(name, spec), priced_by=priced_by) for name, spec in models.items()}
        return cls(infos, as_of=data.get("as_of"), sources=data.get("sources"))

    def to_dict(self) -> dict[str, Any]:
        """The table in the JSON format :meth:`from_dict` reads."""
        out: dict[str, Any] = {}
        for info in self._models.values():
            spec: dict[str, Any] = {"input": info.pricing.input_per_mtok, "output": info.pricing.output_per_mtok}
            if info.pricing.per_call:
                spec["per_call"] = info.pricing.per_call
            for attr in ("provider", "source", "params_billion", "total_params_billion"):
                if getattr(info, attr) is not None:
                    spec[attr] = getattr(info, attr)
            if info.local:
                spec["local"] = True
            if info.aliases:
                spec["aliases"] = list(info.aliases)
            out[info.name] = spec
        return {"schema": 1, "as_of": self.as_of, "sources": dict(self.sources), "models": out}

    def copy(self) -> PriceTable:
        table = PriceTable(self._models, as_of=self.as_of, sources=self.sources, maintained=self.maintained)
        table._overridden = set(self._overridden)
        return table

    # -- look-ups -----------------------------------------------------------------------------------------
    def info(self, model: str) -> ModelInfo:
        """Everything known about ``model``; raises :class:`UnknownPriceError` if it is not listed."""
        found = self.find(model)
        if found is None:
            raise UnknownPriceError(
                f"no price known for model {model!r}; pass Pricing(...) or allow_unpriced=True "
                f"(or add it with PriceTable.override)"
            )
        return found

    def find(self, model: str) -> ModelInfo | None:
        """Like :meth:`info` but ``None`` for an unknown model (sources in the module docstring's order)."""
        if type(model) is str and model in self._resolved:
            return self._resolved[model]
        entry = self._find_entry(model)
        if self.maintained and (entry is None or not (entry.local or entry.name in self._overridden)):
            entry = self._maintained(model, entry)
        if len(self._resolved) < 4096:
            self._resolved[model] = entry
        return entry

    def _maintained(self, model: str, entry: ModelInfo | None) -> ModelInfo | None:
        """genai-prices' price of ``model`` (at the host the shipped entry names), else ``entry``."""
        from rag_routing.ledger import maintained_prices

        provider = None
        if entry is not None:
            if entry.source and entry.source != entry.provider:
                return entry  # priced at a third-party host (RouterBench-style cost matrices): keep that price
            provider = entry.provider if entry.provider in maintained_prices.providers() else None
        found = None
        for key in (model, *(k for k in _candidate_keys(model) if k != model)):
            found = maintained_prices.lookup(key, provider)
            if found is not None:
                break
        if found is None:
            return entry
        if entry is None:
            return ModelInfo(name=found.model_id, pricing=found.pricing, provider=found.provider,
                             source=found.provider, priced_by=found.source)
        return replace(entry, pricing=found.pricing, priced_by=found.source)

    def _find_entry(self, model: str) -> ModelInfo | None:
        name = self._memo.get(model) if type(model) is str else None
        if name is None:
            if not isinstance(model, str) or not model.strip():
                raise InvalidInputError(f"model must be a non-empty string, got {model!r}")
            name = next((self._index[k] for k in _candidate_keys(model) if k in self._index), "")
            if len(self._memo) < 4096:  # look-ups repeat the same few ids: remember them, boundedly
                self._memo[model] = name
        return self._models[name] if name else None

    def get(self, model: str) -> Pricing:
        """The :class:`Pricing` of ``model`` (raises :class:`UnknownPriceError` if unknown)."""
        return self.info(model).pricing

    def params_billion(self, model: str) -> float | None:
        """Active parameters (billions) of ``model`` if known, else ``None``."""
        found = self.find(model)
        return None if found is None else found.params_billion

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and bool(model.strip()) and self.find(model) is not None

    def __len__(self) -> int:
        return len(self._models)

    def models(self) -> list[str]:
        return sorted(self._models)

    # -- changes ------------------------------------------------------------------------------------------
    def override(self, model: str, pricing: Pricing, *, params_billion: float | None = None,
                 local: bool | None = None) -> PriceTable:
        """Set the price of ``model`` in this table (adding it if new). Returns ``self`` for chaining."""
        if not isinstance(pricing, Pricing):
            raise InvalidInputError(f"override needs a Pricing, got {type(pricing).__name__}")
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model must be a non-empty string, got {model!r}")
        # Same entry only for the same name (or alias), with or without provider prefix; a dated
        # snapshot ("gpt-4o-2024-05-13") gets its own entry rather than repricing the family.
        key = _key(model)
        name = self._index.get(key) or self._index.get(_bare(key))
        if name is not None:
            info = replace(self._models[name], pricing=pricing, priced_by="override")
        else:
            info = ModelInfo(name=model.strip(), pricing=pricing, priced_by="override")
        if params_billion is not None:
            info = replace(info, params_billion=_positive(params_billion, "params_billion"))
        if local is not None:
            info = replace(info, local=local)
        self._overridden.add(info.name)
        self._add(info)
        return self

    def with_overrides(self, overrides: Mapping[str, Pricing | Mapping[str, float]]) -> PriceTable:
        """A copy with ``{model: Pricing | {"input":, "output":}}`` applied."""
        table = self.copy()
        for model, value in overrides.items():
            pricing = value if isinstance(value, Pricing) else _pricing_from_json(model, value)
            table.override(model, pricing)
        return table

    def _add(self, info: ModelInfo) -> None:
        self._memo.clear()
        self._resolved.clear()
        old = self._models.get(info.name)
        if old is not None:
            for alias in old.aliases:
                self._index.pop(_key(alias), None)
        self._models[info.name] = info
        for alias in (info.name, *info.aliases):
            self._index[_key(alias)] = info.name

    def __repr__(self) -> str:
        backed = ", backed by genai-prices" if self.maintained else ""
        return f"PriceTable({len(self)} models, as_of={self.as_of!r}{backed})"


def resolve_pricing(model: str | None, pricing: Pricing | None = None, table: PriceTable | None = None,
                    allow_unpriced: bool = False) -> tuple[Pricing, bool]:
    """The pricing to use and whether it is a real price (``False`` = zero by ``allow_unpriced``)."""
    chosen, priced, _ = price_with_source(model, pricing, table, allow_unpriced)
    return chosen, priced


def price_with_source(model: str | None, pricing: Pricing | None = None, table: PriceTable | None = None,
                      allow_unpriced: bool = False) -> tuple[Pricing, bool, str]:
    """Like :func:`resolve_pricing`, plus which source priced it (``"candidate"``, ``"override"``,
    ``"genai-prices <version>"``, ``"shipped <as_of>"``, ``"table"`` or ``"unpriced"``)."""
    if pricing is not None:
        return pricing, True, "candidate"
    if model is not None:
        found = (table if table is not None else default_table()).find(model)
        if found is not None:
            return found.pricing, True, found.priced_by
    if allow_unpriced:
        return ZERO_PRICE, False, "unpriced"
    raise UnknownPriceError(f"no price known for model {model!r}; pass Pricing(...) or allow_unpriced=True")


def estimate_cost(model: str | None, input_tokens: int | float, output_tokens: int | float = 0, *,
                  pricing: Pricing | None = None, table: PriceTable | None = None,
                  allow_unpriced: bool = False) -> float:
    """US $ of one call of ``model`` with the given token counts.

    ``pricing`` wins over the table; an unknown model raises :class:`UnknownPriceError` unless
    ``allow_unpriced=True`` (then 0.0).

    Example:
        >>> estimate_cost("gpt-4-1106-preview", 1_000_000, 1_000_000)
        40.0
        >>> estimate_cost("some-new-llm", 10, 10, allow_unpriced=True)
        0.0
    """
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or math.isinf(value):
            raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    chosen, _ = resolve_pricing(model, pricing, table, allow_unpriced)
    return chosen.cost(input_tokens, output_tokens)


@functools.lru_cache(maxsize=1)
def _shipped_data() -> dict[str, Any]:
    text = resources.files("rag_routing").joinpath("data", "prices.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def default_table() -> PriceTable:
    """The shared, read-only-by-convention shipped table used when no table is passed.

    Do not call :meth:`PriceTable.override` on it; use :meth:`PriceTable.default` for your own copy.
    """
    return PriceTable.default()


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _pricing_from_json(name: str, spec: Mapping[str, Any]) -> Pricing:
    try:
        return Pricing(input_per_mtok=spec["input"], output_per_mtok=spec["output"],
                       per_call=spec.get("per_call", 0.0))
    except KeyError as exc:
        raise InvalidInputError(f"price of {name!r} needs 'input' and 'output' ($ per 1M tokens)") from exc
    except ValueError as exc:  # pydantic validation
        raise InvalidInputError(f"invalid price for {name!r}: {exc}") from exc


def _info_from_json(name: str, spec: Mapping[str, Any]) -> ModelInfo:
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"price of {name!r} must be a mapping, got {type(spec).__name__}")
    params = spec.get("params_billion")
    total = spec.get("total_params_billion")
    return ModelInfo(
        name=name,
        pricing=_pricing_from_json(name, spec),
        provider=spec.get("provider"),
        source=spec.get("source"),
        local=bool(spec.get("local", False)),
        params_billion=None if params is None else _positive(params, "params_billion"),
        total_params_billion=None if total is None else _positive(total, "total_params_billion"),
        aliases=tuple(spec.get("aliases", ())),
    )


__all__ = ["PriceTable", "ModelInfo", "Pricing", "estimate_cost", "resolve_pricing", "price_with_source",
           "default_table", "ZERO_PRICE"]
