"""Prices from a maintained database: `genai-prices` (pydantic), behind the shipped table.

`genai-prices <https://github.com/pydantic/genai-prices>`_ is a price database for ~50 providers, released about
monthly, with historic prices and the providers' own model-id matching (``gpt-4o-2024-08-06`` -> ``gpt-4o``);
it works offline from the snapshot bundled in the installed package. It is optional (``pip install
'rag-routing[prices]'``): without it :func:`lookup` returns ``None`` and the shipped table prices everything.

Rates are read at the base tier (the price of 1,000 tokens, scaled to $ per 1M), i.e. for prompts under the
long-context thresholds some providers charge more above.

Example:
    >>> price = lookup("gpt-4o-mini")
    >>> price is None or (price.pricing.input_per_mtok, price.pricing.output_per_mtok) == (0.15, 0.6)
    True
    >>> lookup("my-own-model") is None
    True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rag_routing.candidates import Pricing

#: Name of the source in entries and :attr:`ModelInfo.priced_by`.
SOURCE = "genai-prices"
_PROBE_TOKENS = 1000


@dataclass(frozen=True, slots=True)
class MaintainedPrice:
    """A price found in genai-prices."""

    pricing: Pricing
    provider: str
    model_id: str
    source: str  # "genai-prices <version>"


@functools.lru_cache(maxsize=1)
def version() -> str | None:
    """The installed genai-prices version, ``None`` when it is not installed."""
    try:
        import genai_prices
    except ImportError:
        return None
    return str(genai_prices.__version__)


def available() -> bool:
    """Whether genai-prices is installed."""
    return version() is not None


@functools.lru_cache(maxsize=4096)
def lookup(model: str, provider: str | None = None) -> MaintainedPrice | None:
    """The base-tier price of ``model`` (at ``provider`` when given), or ``None`` if genai-prices does not know
    it or is not installed."""
    if not available() or not model.strip():
        return None
    from genai_prices import Usage, calc_price

    try:
        rate_in = calc_price(Usage(input_tokens=_PROBE_TOKENS), model, provider_id=provider)
        rate_out = calc_price(Usage(output_tokens=_PROBE_TOKENS), model, provider_id=provider)
    except (LookupError, ValueError):  # unknown model or provider
        return None
    scale = 1_000_000 / _PROBE_TOKENS
    pricing = Pricing(input_per_mtok=round(float(rate_in.total_price) * scale, 9),
                      output_per_mtok=round(float(rate_out.total_price) * scale, 9))
    return MaintainedPrice(pricing, str(rate_in.provider.id), str(rate_in.model.id), f"{SOURCE} {version()}")


@functools.lru_cache(maxsize=1)
def providers() -> frozenset[str]:
    """Provider ids genai-prices knows (empty when it is not installed)."""
    if not available():
        return frozenset()
    from genai_prices.data_snapshot import get_snapshot

    return frozenset(p.id for p in get_snapshot().providers)


__all__ = ["MaintainedPrice", "lookup", "available", "version", "providers", "SOURCE"]
