"""SemanticRouter regressions: default thresholds fitted from the route utterances (a fixed 0.5 rejected most
in-scope queries) and one embedding pass per routed batch."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.embeddings import TfidfFeaturizer, make_featurizer
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.semantic import SemanticRouter

TOPICS = {
    "billing": ["refund my last invoice", "why was my card charged twice", "update the credit card on my account",
                "I need a copy of my receipt", "cancel my subscription payment", "the invoice amount is wrong",
                "how do I get my money back", "change my billing address", "my payment failed at checkout",
                "charge on my statement I do not recognise", "apply a discount code to my invoice",
                "when will the refund arrive"],
    "weather": ["will it rain tomorrow in Paris", "what is the temperature outside", "is it going to snow tonight",
                "weather forecast for the weekend", "how windy is it today", "do I need an umbrella this afternoon",
                "sunny or cloudy on Saturday", "storm warning for my area", "how hot will it be on Monday",
                "chance of showers this evening", "humidity level right now", "frost expected overnight"],
    "cooking": ["how long do I boil an egg", "recipe for pancakes", "what can I cook with chicken and rice",
                "how to make tomato sauce", "oven temperature for roasting vegetables", "substitute for butter "
                "in a cake", "how do I knead bread dough", "easy vegetarian dinner ideas", "how to cook pasta al dente",
                "marinade for grilled fish", "how much salt in soup", "bake chocolate chip cookies"],
}
OUT_OF_SCOPE = ["explain the theory of relativity", "who won the football world cup in 1998",
                "translate hello into Japanese", "what is the capital of Mongolia"]


def split(n_train: int = 6):
    train = {name: u[:n_train] for name, u in TOPICS.items()}
    test = [(q, name) for name, u in TOPICS.items() for q in u[n_train:]]
    return train, test


def build(train, featurizer) -> SemanticRouter:
    routes = [{"name": name, "candidate": name, "utterances": u} for name, u in train.items()]
    names = list(train)
    queries = [q for u in train.values() for q in u]
    ds = RoutingDataset(queries, names, np.ones((len(queries), len(names))), np.tile([0.001, 0.002, 0.003],
                                                                                      (len(queries), 1)))
    return SemanticRouter(routes=routes, featurizer=featurizer).fit(ds)


class CountingFeaturizer(TfidfFeaturizer):
    """TF-IDF that counts how many texts it embeds."""

    embedded = 0

    def transform(self, texts):
        CountingFeaturizer.embedded += len(texts)
        return super().transform(texts)


def test_route_embeds_each_query_once():
    train, test = split()
    router = build(train, CountingFeaturizer(n_components=16))
    queries = [q for q, _ in test]
    CountingFeaturizer.embedded = 0
    decisions = router.route(queries)
    assert CountingFeaturizer.embedded == len(queries)
    assert [d.metadata["semantic_route"] for d in decisions] == router.match(queries)


def test_default_thresholds_are_fitted_from_utterances():
    train, _ = split()
    router = build(train, "tfidf")
    fixed = SemanticRouter(routes=[{"name": n, "utterances": u} for n, u in train.items()], featurizer="tfidf",
                           threshold=0.5)
    assert router.threshold is None and fixed.threshold == 0.5
    assert router.thresholds_.shape == (3,) and (router.thresholds_ < 0.5).all()


def test_a_fixed_route_threshold_is_kept():
    train, _ = split()
    routes = [{"name": n, "candidate": n, "utterances": u, **({"threshold": 0.9} if n == "billing" else {})}
              for n, u in train.items()]
    queries = [q for u in train.values() for q in u]
    ds = RoutingDataset(queries, list(train), np.ones((len(queries), 3)), np.zeros((len(queries), 3)))
    router = SemanticRouter(routes=routes, featurizer="tfidf").fit(ds)
    assert router.thresholds_[0] == 0.9 and (router.thresholds_[1:] < 0.9).all()


@pytest.mark.slow
def test_minilm_default_thresholds_route_in_scope_queries():
    """With the default embedder, fitted thresholds route the in-scope test utterances (a fixed 0.5 did not)
    and still give 'no route' to most clearly out-of-scope questions."""
    train, test = split()
    router = build(train, "minilm")
    got = router.match([q for q, _ in test])
    accuracy = np.mean([g == want for g, (_, want) in zip(got, test)])
    fixed = build(train, make_featurizer("minilm"))
    fixed.thresholds_[:] = 0.5
    fixed_accuracy = np.mean([g == want for g, (_, want) in zip(fixed.match([q for q, _ in test]), test)])
    assert accuracy >= 0.85 and accuracy > fixed_accuracy
    assert sum(m is None for m in router.match(OUT_OF_SCOPE)) >= 2
