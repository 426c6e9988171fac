"""ContrastiveRouter (RouterDC): learning on a tiny random BERT, shapes, persistence, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rag_routing.errors import InvalidInputError, NotFittedError  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.routers import registry  # noqa: E402
from rag_routing.routers.base import load_router  # noqa: E402
from rag_routing.routers.contrastive import ContrastiveRouter  # noqa: E402

TINY = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
FAST = {"encoder_config": TINY, "lr": 5e-3, "head_lr": 5e-2, "max_seq_length": 32, "batch_size": 16,
        "top_k": 1, "bottom_k": 1, "n_clusters": 2}


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setitem(registry._BUILTIN, "contrastive", "rag_routing.routers.contrastive:ContrastiveRouter")


@pytest.fixture
def split() -> RoutingDataset:
    """Three candidates: A is best on maths, B on chat, C is mediocre everywhere."""
    maths = [f"solve the integral of x^{i} times sin(x) dx" for i in range(16)]
    chat = [f"hello, how are you doing today friend number {i}" for i in range(16)]
    quality = np.array([[1.0, 0.0, 0.5]] * 16 + [[0.0, 1.0, 0.5]] * 16)
    return RoutingDataset(maths + chat, ["A", "B", "C"], quality, np.tile([0.01, 0.01, 0.01], (32, 1)))


@pytest.mark.parametrize("sample_weight", [0.0, 1.0])
def test_learns_which_candidate_is_best(split, sample_weight):
    router = ContrastiveRouter(epochs=6, patience=6, sample_weight=sample_weight, **FAST).fit(split)
    queries = ["solve the integral of x^99 times sin(x) dx", "hello, how are you doing today friend number 99"]
    S = router.predict_quality(queries)
    assert S.shape == (2, 3) and np.allclose(S.sum(axis=1), 1.0)
    assert router.route_indices(queries).tolist() == [0, 1]
    sims = router.similarities(queries)
    assert sims.shape == (2, 3) and (np.abs(sims) <= 1 + 1e-5).all()


def test_positive_and_negative_pairs():
    router = ContrastiveRouter(top_k=2, bottom_k=1)
    pos, neg, usable = router._pairs(np.array([[1.0, 0.0, 0.5], [1.0, 1.0, 1.0], [np.nan, 0.2, 0.9]]))
    assert pos[0].tolist() == [0, 2] and neg[0].tolist() == [1]
    assert usable.tolist() == [True, False, True]  # all tied: nothing to contrast
    assert pos[2].tolist() == [2, -1] and neg[2].tolist() == [1]


def test_save_load_round_trip_and_determinism(tmp_path, split):
    router = ContrastiveRouter(epochs=2, **FAST).fit(split)
    loaded = load_router(router.save(tmp_path / "routerdc.npz"))
    queries = ["integral of x", "hello friend"]
    assert isinstance(loaded, ContrastiveRouter)
    assert np.allclose(loaded.predict_quality(queries), router.predict_quality(queries), atol=1e-6)
    again = ContrastiveRouter(epochs=2, **FAST).fit(split)
    assert np.allclose(again.predict_quality(queries), router.predict_quality(queries), atol=1e-6)


def test_errors(split):
    with pytest.raises(NotFittedError):
        ContrastiveRouter(**FAST).predict_quality(["x"])
    with pytest.raises(InvalidInputError, match="temperature"):
        ContrastiveRouter(temperature=0)
    with pytest.raises(InvalidInputError, match="batch_size"):
        ContrastiveRouter(batch_size=1)
    tied = RoutingDataset(["a", "b", "c"], ["x", "y"], [[1, 1], [0, 0], [1, 1]], [[0.1, 0.2]] * 3)
    with pytest.raises(InvalidInputError, match="beats another"):
        ContrastiveRouter(**FAST).fit(tied)
    router = ContrastiveRouter(epochs=1, **FAST).fit(split)
    with pytest.raises(InvalidInputError, match="query text"):
        router.predict_quality(np.zeros((1, 16), dtype=np.float32))
