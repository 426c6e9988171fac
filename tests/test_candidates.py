from __future__ import annotations

import pytest

from rag_routing.candidates import Candidate, CandidatePool, Pricing
from rag_routing.errors import InvalidInputError, UnknownCandidateError


def test_pricing_cost_per_call():
    p = Pricing(input_per_mtok=2.5, output_per_mtok=10.0, per_call=0.001)
    assert p.cost(1_000_000, 0) == pytest.approx(2.501)
    assert p.cost(1000, 500) == pytest.approx(0.0025 + 0.005 + 0.001)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_negative_or_non_finite_price_is_rejected(bad):
    with pytest.raises(ValueError, match="price"):
        Pricing(input_per_mtok=bad, output_per_mtok=1.0)


def test_pool_rejects_duplicates_and_empty():
    with pytest.raises(InvalidInputError, match="unique"):
        CandidatePool(["a", "b", "a"])
    with pytest.raises(InvalidInputError):
        CandidatePool([])
    with pytest.raises(ValueError):
        Candidate(name="  ")


def test_pool_lookup_and_lifecycle():
    pool = CandidatePool([Candidate(name="small", model="gpt-4o-mini"), "large"])
    assert pool.names == ["small", "large"]
    assert pool.index("large") == 1 and pool["small"].model_id == "gpt-4o-mini"
    assert "large" in pool and "huge" not in pool
    with pytest.raises(UnknownCandidateError, match="known candidates"):
        pool.index("huge")
    with pytest.raises(UnknownCandidateError):
        pool[5]
    grown = pool.with_candidate("huge")
    assert grown.names == ["small", "large", "huge"] and len(pool) == 2
    assert grown.without("small").names == ["large", "huge"]
    with pytest.raises(UnknownCandidateError):
        pool.without("nope")


def test_target_is_not_serialised():
    c = Candidate(name="x", target=object(), pricing=Pricing(input_per_mtok=1, output_per_mtok=2))
    dumped = c.model_dump()
    assert "target" not in dumped and dumped["pricing"]["output_per_mtok"] == 2
