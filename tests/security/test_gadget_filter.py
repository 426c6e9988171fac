"""The bigram language model and the gadget filter: calibrated false positives, detection, stripping."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.routers.baselines import BestSingleRouter
from rag_routing.security import BigramLM, GadgetFilter, GuardedRouter, SuspiciousQueryError, common_tokens

SALAD = "entropy coffee lemma puppy tort recipe isotope weekend"


def test_bigram_lm_prefers_natural_word_order():
    lm = BigramLM().fit(["the cat sat on the mat", "the dog sat on the rug"] * 5)
    assert lm.surprisal("the cat sat on the rug").mean() < lm.surprisal("rug the on sat cat the").mean()
    assert lm.surprisal("").size == 0 and np.isnan(lm.perplexity(""))
    assert lm.surprisal("the zebra", relative=True)[1] < lm.surprisal("the zebra")[1]
    with pytest.raises(NotFittedError):
        BigramLM().surprisal("x")
    with pytest.raises(InvalidInputError):
        BigramLM().fit(["", "  "])


@pytest.fixture(scope="module")
def fitted(security_data):
    train, cal, test = security_data
    return GadgetFilter(false_positive_rate=0.02, min_gadget=3).fit(train.queries + cal.queries), test


def test_false_positives_stay_near_the_target_on_held_out_queries(fitted):
    lm_filter, test = fitted
    touched = np.mean([lm_filter.check_query(q, "alice")[1] is not None for q in test.queries])
    assert touched <= 0.1


def test_an_appended_gadget_is_found_and_stripped(fitted):
    lm_filter, test = fitted
    kept = []
    for query in test.queries:
        cleaned, done = lm_filter.check_query(f"{query} {SALAD}", "mallory")
        assert done is not None and done["action"] == "stripped"
        # the run is cut at a mean-shift change point: no gadget token is left, but the query's own rare
        # last words may go with it (on this template data they are as surprising as the gadget)
        assert query.startswith(cleaned) and len(cleaned.split()) >= 3
        kept.append(len(cleaned) / len(query))
    assert np.median(kept) >= 0.6


def test_prefix_flag_refuse_and_length(fitted, security_data):
    train, cal, _ = security_data
    clean = train.queries + cal.queries
    both = GadgetFilter(position="both", false_positive_rate=0.02).fit(clean)
    cleaned, done = both.check_query(f"{SALAD} {clean[0]}", "m")
    assert done["side"] == "prefix" and cleaned.endswith(clean[0][-10:])
    flag = GadgetFilter(action="flag", false_positive_rate=0.02).fit(clean)
    query, done = flag.check_query(f"{clean[0]} {SALAD}", "m")
    assert query == f"{clean[0]} {SALAD}" and done["action"] == "flagged"
    refuse = GadgetFilter(action="refuse", false_positive_rate=0.02).fit(clean)
    with pytest.raises(SuspiciousQueryError, match="routing attack"):
        refuse.check_query(f"{clean[0]} {SALAD}", "m")
    long_but_natural = " and ".join(clean[:20])
    assert flag.check_query(long_but_natural, "m")[1]["action"] == "flagged"  # an unusual length is flagged


def test_guarded_router_routes_the_stripped_query(fitted, security_data):
    lm_filter, test = fitted
    train = security_data[0]
    guarded = GuardedRouter(BestSingleRouter().fit(train), [lm_filter])
    decision = guarded.route_one(f"{test.queries[0]} {SALAD}", principal="m")
    assert decision.metadata["guards"][0]["guard"] == "gadget_filter"
    assert decision.metadata["guards"][0]["removed_tokens"] >= 3


def test_validation():
    with pytest.raises(NotFittedError):
        GadgetFilter().check_query("x", "p")
    with pytest.raises(InvalidInputError):
        GadgetFilter().fit(["a", "b"])
    for bad in ({"action": "zap"}, {"false_positive_rate": 1.5}, {"min_gadget": 0}, {"max_gadget": 1,
                "min_gadget": 3}, {"position": "middle"}, {"clip_quantile": 0.0}):
        with pytest.raises(InvalidInputError):
            GadgetFilter(**bad)
    assert common_tokens(["Alpha beta beta", "beta gamma"], n=1) == ["beta"]
