"""EncoderClassifierRouter: the three heads on a tiny random BERT, shapes, persistence, determinism, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rag_routing.errors import InvalidInputError, NotFittedError  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.routers import registry  # noqa: E402
from rag_routing.routers.base import load_router  # noqa: E402
from rag_routing.routers.encoder import EncoderClassifierRouter  # noqa: E402

TINY = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
FAST = {"encoder_config": TINY, "lr": 5e-3, "head_lr": 5e-3, "max_seq_length": 32, "batch_size": 16}


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    import torch

    torch.set_num_threads(1)  # tiny models: threads only add contention
    monkeypatch.setitem(registry._BUILTIN, "encoder", "rag_routing.routers.encoder:EncoderClassifierRouter")


@pytest.mark.parametrize("head", ["classification", "regression", "distillation"])
def test_heads_learn_the_toy_split(toy_dataset, head):
    router = EncoderClassifierRouter(head=head, epochs=5, patience=5, **FAST).fit(toy_dataset)
    queries = ["solve the integral of x^5 times sin(x) dx", "hello, how are you doing today friend number 3"]
    S = router.predict_quality(queries)
    assert S.shape == (2, 2) and ((S >= 0) & (S <= 1)).all()
    if head != "regression":
        assert np.allclose(S.sum(axis=1), 1.0, atol=1e-5)
    assert S[0, 1] - S[0, 0] > S[1, 1] - S[1, 0]  # the large model's edge is larger on the maths query
    if head != "regression":
        assert router.route_indices(queries, lam=1.0).tolist() == [1, 0]
    assert 1 <= len(router.history_) <= 5


def test_save_load_round_trip_and_determinism(tmp_path, toy_dataset):
    router = EncoderClassifierRouter(epochs=2, **FAST).fit(toy_dataset)
    path = router.save(tmp_path / "encoder.npz")
    with np.load(path, allow_pickle=False) as npz:  # weights are plain arrays
        assert any(k.startswith("state.encoder.") for k in npz.files)
    loaded = load_router(path)
    queries = ["integral of x", "hello friend"]
    assert isinstance(loaded, EncoderClassifierRouter)
    assert np.allclose(loaded.predict_quality(queries), router.predict_quality(queries), atol=1e-6)
    again = EncoderClassifierRouter(epochs=2, **FAST).fit(toy_dataset)
    assert np.allclose(again.predict_quality(queries), router.predict_quality(queries), atol=1e-6)


def test_early_stopping_keeps_few_epochs(toy_dataset):
    router = EncoderClassifierRouter(epochs=20, patience=1, **{**FAST, "lr": 0.5, "head_lr": 0.5}).fit(toy_dataset)
    assert len(router.history_) < 20


def test_errors(toy_dataset):
    with pytest.raises(NotFittedError):
        EncoderClassifierRouter(**FAST).predict_quality(["x"])
    with pytest.raises(InvalidInputError, match="head"):
        EncoderClassifierRouter(head="ranking")
    with pytest.raises(InvalidInputError, match="encoder_config"):
        EncoderClassifierRouter(encoder_config="tiny")
    with pytest.raises(InvalidInputError, match="val_fraction"):
        EncoderClassifierRouter(val_fraction=0.9)
    scores = RoutingDataset(["a b", "c d"], ["x", "y"], [[3.0, 7.0], [9.0, 1.0]], [[1.0, 2.0]] * 2)
    with pytest.raises(InvalidInputError, match="distillation"):
        EncoderClassifierRouter(head="regression", **FAST).fit(scores)
    router = EncoderClassifierRouter(epochs=1, **FAST).fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="query text"):
        router.predict_quality(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="empty"):
        router.predict_quality([" "])


def test_torch_is_not_imported_with_the_module():
    code = "import sys, rag_routing.routers.encoder; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow
def test_minilm_fine_tunes_on_the_toy_split(toy_dataset):
    import torch

    torch.set_num_threads(1)
    router = EncoderClassifierRouter(epochs=2, lr=1e-4, head_lr=1e-2, max_seq_length=32).fit(toy_dataset)
    chosen = router.route_indices(["what is the integral of cos(x)?", "hi, how are you doing?"], lam=1.0)
    assert chosen.tolist() == [1, 0]
