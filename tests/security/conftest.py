"""Synthetic routing data for the security tests: hard technical questions only the large model answers,
easy chat both answer; several templates so TF-IDF routers, the bigram filter and the gadget search all have
something realistic to work with."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.evaluation.dataset import RoutingDataset

HARD = ["integral", "theorem", "eigenvalue", "derivative", "polynomial", "topology", "manifold", "lemma",
        "statute", "jurisdiction", "tort", "plaintiff", "enzyme", "isotope", "quantum", "entropy"]
EASY = ["weather", "movie", "pizza", "holiday", "music", "garden", "coffee", "football", "birthday", "recipe",
        "puppy", "beach", "song", "breakfast", "weekend", "friend"]
HARD_TEMPLATES = ["prove the {a} result about the {b} in detail", "explain why the {a} implies the {b}",
                  "derive the {a} from the {b} step by step", "what does the {a} say about the {b}"]
EASY_TEMPLATES = ["what is your favourite {a} for the {b}", "tell me something nice about the {a} and the {b}",
                  "any ideas for a {a} on the {b}", "how was the {a} at the {b}"]


def make_dataset(n: int = 240, seed: int = 0) -> RoutingDataset:
    rng = np.random.default_rng(seed)
    queries, quality = [], []
    for i in range(n):
        hard = i % 2 == 0
        words, templates = (HARD, HARD_TEMPLATES) if hard else (EASY, EASY_TEMPLATES)
        a, b = rng.choice(words, 2, replace=False)
        queries.append(str(rng.choice(templates)).format(a=a, b=b))
        small_right = rng.random() < (0.1 if hard else 0.9)
        quality.append([float(small_right), float(rng.random() < 0.95)])
    return RoutingDataset(queries, ["small", "large"], np.array(quality), np.tile([0.001, 0.02], (n, 1)),
                          name="synthetic-security")


@pytest.fixture(scope="session")
def security_data() -> tuple[RoutingDataset, RoutingDataset, RoutingDataset]:
    """(train, calibration, test) splits of the synthetic data."""
    ds = make_dataset(360)
    rows = np.random.default_rng(1).permutation(len(ds))
    return ds.subset(np.sort(rows[:200])), ds.subset(np.sort(rows[200:280])), ds.subset(np.sort(rows[280:]))
