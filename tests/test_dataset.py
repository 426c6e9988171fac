from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset


def make(n=10):
    rng = np.random.default_rng(0)
    quality = rng.random((n, 3))
    quality[0, 1] = np.nan
    return RoutingDataset(queries=[f"q{i}" for i in range(n)], candidates=["a", "b", "c"], quality=quality,
                          cost=np.tile([0.1, 0.2, 0.3], (n, 1)), metadata=[{"i": i} for i in range(n)])


def test_split_is_disjoint_complete_and_seeded():
    ds = make(100)
    train, test = ds.train_test_split(test_size=0.3, seed=1)
    assert len(train) == 70 and len(test) == 30
    assert set(train.queries) | set(test.queries) == set(ds.queries)
    assert not set(train.queries) & set(test.queries)
    again, _ = ds.train_test_split(test_size=0.3, seed=1)
    other, _ = ds.train_test_split(test_size=0.3, seed=2)
    assert again.queries == train.queries and other.queries != train.queries
    assert [m["i"] for m in train.metadata] == [int(q[1:]) for q in train.queries]


def test_nan_is_unknown_not_zero():
    ds = make()
    means = ds.mean_quality()
    assert means[1] == pytest.approx(np.nanmean(ds.quality[:, 1]))
    assert ds.summary()["missing_quality"] == 1


def test_subset_and_candidate_selection():
    ds = make()
    sub = ds.subset(np.array([True, False] * 5))
    assert sub.queries == ["q0", "q2", "q4", "q6", "q8"]
    swapped = ds.select_candidates(["c", "a"])
    assert swapped.candidates == ["c", "a"] and np.allclose(swapped.cost[0], [0.3, 0.1])
    with pytest.raises(UnknownCandidateError):
        ds.select_candidates(["zzz"])
    with pytest.raises(InvalidInputError):
        ds.subset([100])


def test_concat_and_embeddings():
    ds = make(4).with_embeddings(np.ones((4, 2)), "m")
    both = ds.concat(ds)
    assert len(both) == 8 and both.embeddings.shape == (8, 2) and both.embedding_model == "m"
    assert ds.subset([1, 2]).embeddings.shape == (2, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(quality=np.zeros((2, 3))), "shape"),
        (dict(cost=-np.ones((3, 3))), "cost must be >= 0"),
        (dict(quality=np.full((3, 3), np.inf)), "infinite"),
        (dict(candidates=["a", "a", "b"]), "unique"),
        (dict(metadata=[{}]), "metadata"),
    ],
)
def test_invalid_datasets_are_rejected(kwargs, message):
    base = dict(queries=["x", "y", "z"], candidates=["a", "b", "c"], quality=np.zeros((3, 3)), cost=np.zeros((3, 3)))
    base.update(kwargs)
    with pytest.raises(InvalidInputError, match=message):
        RoutingDataset(**base)


def test_bad_split_sizes():
    with pytest.raises(InvalidInputError):
        make(3).train_test_split(test_size=0.01)


def test_responses_follow_rows_and_columns():
    ds = make(3)
    ds = RoutingDataset(queries=ds.queries, candidates=ds.candidates, quality=ds.quality, cost=ds.cost,
                        responses=[[f"{q}-{c}" for c in ds.candidates] for q in ds.queries])
    assert ds.subset([2]).responses == [["q2-a", "q2-b", "q2-c"]]
    assert ds.select_candidates(["c", "a"]).responses[0] == ["q0-c", "q0-a"]
    assert len(ds.concat(ds).responses) == 6
    with pytest.raises(InvalidInputError, match="responses"):
        RoutingDataset(queries=["x"], candidates=["a"], quality=[[1.0]], cost=[[0.0]], responses=[["a", "b"]])
