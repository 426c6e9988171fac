"""The Router contract shared by every router: validation, persistence without pickle, registry."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from rag_routing.errors import CorruptStateError, InvalidInputError, NotFittedError, NoRouteError
from rag_routing.routers.base import load_router
from rag_routing.routers.baselines import BestSingleRouter, CheapestRouter, OracleRouter, RandomRouter
from rag_routing.routers.persistence import read_state, write_state
from rag_routing.routers.registry import available_routers, create_router, get_router_class, register_router


def test_baselines_route_as_documented(toy_dataset):
    assert set(BestSingleRouter().fit(toy_dataset).route_indices(toy_dataset)) == {1}
    assert set(CheapestRouter().fit(toy_dataset).route_indices(toy_dataset)) == {0}
    oracle = OracleRouter().fit(toy_dataset).route_indices(toy_dataset)
    assert oracle[:20].tolist() == [1] * 20 and oracle[20:].tolist() == [0] * 20
    r1 = RandomRouter(seed=3).fit(toy_dataset).route_indices(toy_dataset)
    r2 = RandomRouter(seed=3).fit(toy_dataset).route_indices(toy_dataset)
    assert np.array_equal(r1, r2) and 0 < r1.mean() < 1


def test_unfitted_and_bad_queries(toy_dataset):
    with pytest.raises(NotFittedError, match="call fit"):
        BestSingleRouter().route(["hi"])
    router = BestSingleRouter().fit(toy_dataset)
    with pytest.raises(InvalidInputError, match="empty"):
        router.route(["  "])
    with pytest.raises(InvalidInputError, match="strings"):
        router.route([None])
    with pytest.raises(InvalidInputError, match="oracle needs"):
        OracleRouter().fit(toy_dataset).route(["hi"])
    with pytest.raises(InvalidInputError):
        BestSingleRouter().fit("not a dataset")


class _FailsOnSecondFit(BestSingleRouter):
    """A router whose learning step fails on demand (after the base class has set its fitted attributes)."""

    fail = False

    def _fit(self, features, dataset):
        super()._fit(features, dataset)
        if self.fail:
            raise InvalidInputError("learning failed")


def test_a_failed_fit_leaves_the_router_as_it_was(toy_dataset):
    router = _FailsOnSecondFit()
    router.fail = True
    with pytest.raises(InvalidInputError, match="learning failed"):
        router.fit(toy_dataset)
    assert not router.is_fitted  # never half-fitted
    with pytest.raises(NotFittedError):
        router.route(["hi"])
    router.fail = False
    before = router.fit(toy_dataset).route_indices(toy_dataset)
    router.fail = True
    with pytest.raises(InvalidInputError):
        router.fit(toy_dataset)
    assert router.is_fitted and np.array_equal(router.route_indices(toy_dataset), before)  # the old fit stays


def test_budget_and_fallback(toy_dataset):
    router = BestSingleRouter(budget=0.005).fit(toy_dataset)
    assert set(router.route_indices(toy_dataset)) == {0}  # the large model costs 0.02 > 0.005
    with pytest.raises(NoRouteError):
        BestSingleRouter(budget=0.0001).fit(toy_dataset).route(["hi"])
    decision = BestSingleRouter(budget=0.0001, fallback="small").fit(toy_dataset).route_one("hi")
    assert decision.candidate == "small" and decision.fallback


def test_save_load_round_trip(tmp_path, toy_dataset):
    router = BestSingleRouter(lam=3.0).fit(toy_dataset)
    path = router.save(tmp_path / "best")
    assert path.suffix == ".npz"
    loaded = load_router(path)
    assert isinstance(loaded, BestSingleRouter) and loaded.lam == 3.0
    assert np.array_equal(loaded.predict_quality(toy_dataset), router.predict_quality(toy_dataset))
    with pytest.raises(CorruptStateError):
        RandomRouter.load(path)  # a BestSingleRouter is not a RandomRouter


def test_corrupt_or_hostile_files_are_rejected(tmp_path, toy_dataset):
    truncated = tmp_path / "t.npz"
    good = BestSingleRouter().fit(toy_dataset).save(tmp_path / "g.npz")
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CorruptStateError):
        load_router(truncated)
    # A file naming a class outside the registry is refused, never imported.
    meta, arrays = read_state(good)
    meta["class"] = "os:system"
    meta["router"] = "os_system"
    write_state(tmp_path / "evil.npz", {k: v for k, v in meta.items() if k != "format_version"}, arrays)
    with pytest.raises(CorruptStateError, match="unknown router"):
        load_router(tmp_path / "evil.npz")
    # An object array (pickle) inside the archive is never unpickled.
    with zipfile.ZipFile(tmp_path / "pickle.npz", "w") as z:
        z.writestr("__meta__.npy", b"\x93NUMPY" + b"\x00" * 100)
    with pytest.raises(CorruptStateError):
        load_router(tmp_path / "pickle.npz")
    with pytest.raises(InvalidInputError):
        load_router(tmp_path / "missing.npz")


def test_persisted_json_is_plain(tmp_path, toy_dataset):
    path = BestSingleRouter().fit(toy_dataset).save(tmp_path / "b.npz")
    meta, _ = read_state(path)
    json.dumps(meta)
    assert meta["router"] == "best" and meta["candidates"] == ["small", "large"]


def test_registry():
    assert {"random", "oracle", "best", "cheapest", "knn", "mf"} <= set(available_routers())
    assert get_router_class("best") is BestSingleRouter
    assert isinstance(create_router("random", seed=1), RandomRouter)
    with pytest.raises(InvalidInputError, match="unknown router"):
        get_router_class("nope")

    @register_router("my_router")
    class MyRouter(CheapestRouter):
        pass

    assert get_router_class("my_router") is MyRouter and "my_router" in available_routers()


def test_unfitted_tfidf_is_fitted_even_when_dataset_embeddings_share_its_name(toy_dataset):
    from rag_routing.embeddings import TfidfFeaturizer

    fitted = TfidfFeaturizer(n_components=4).fit(toy_dataset.queries)
    embedded = toy_dataset.with_embeddings(fitted.transform(toy_dataset.queries), fitted.name)
    router = create_router("knn", featurizer=TfidfFeaturizer(n_components=4)).fit(embedded)
    assert router.featurizer_.is_fitted
    assert router.route_one("solve the integral of x^3 times sin(x) dx").candidate == "large"
