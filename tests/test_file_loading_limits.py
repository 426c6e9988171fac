"""Hostile files get typed errors before anything big is read or any model is loaded (issue 16, findings 11-13):
zip bombs and lying array headers in a router's ``.npz``, featurizers that name paths or hub ids, ``lam`` stored as
a string, deeply nested JSON in price, key and dataset files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from rag_routing import RoutingDataset
from rag_routing.array_blobs import decode_arrays, encode_arrays
from rag_routing.cli import main
from rag_routing.errors import CorruptStateError, DatasetFormatError, InvalidInputError, ModelNotAllowedError
from rag_routing.evaluation.loaders import load_dataset
from rag_routing.ledger.pricing import PriceTable
from rag_routing.routers.base import load_router
from rag_routing.routers.persistence import read_state, write_state
from rag_routing.routers.similarity import KNNRouter
from rag_routing.server.keys import load_api_keys


def _npy_member(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], payload: bytes) -> None:
    with archive.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": shape})
        member.write(payload)


def _meta_member(archive: zipfile.ZipFile) -> None:
    with archive.open("__meta__.npy", "w") as member:
        np.lib.format.write_array(member, np.frombuffer(b'{"format_version": 1}', dtype=np.uint8))


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        _meta_member(archive)
        _npy_member(archive, "bomb.npy", (2**23,), bytes(2**26))  # 64 MiB of zeros in about 64 kB
    data = buffer.getvalue()
    assert len(data) < 2**20
    (tmp_path / "bomb.npz").write_bytes(data)
    with pytest.raises(CorruptStateError, match="zip bomb"):
        load_router(tmp_path / "bomb.npz")
    with pytest.raises(CorruptStateError, match="zip bomb"):
        decode_arrays(data)


def test_an_array_header_declaring_7_tib_is_a_typed_error_not_a_memory_error(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _meta_member(archive)
        _npy_member(archive, "huge.npy", (2**40 - 2**37,), bytes(64))
    (tmp_path / "huge.npz").write_bytes(buffer.getvalue())
    with pytest.raises(CorruptStateError, match="declares"):
        load_router(tmp_path / "huge.npz")
    with pytest.raises(CorruptStateError, match="declares"):
        decode_arrays(buffer.getvalue())


def _fitted_router() -> KNNRouter:
    queries = ["refund my order", "track my parcel", "reset my password", "cancel the plan", "update my card",
               "where is my parcel"]
    quality = np.array([[0.2, 0.9], [0.8, 0.9], [0.3, 0.8], [0.9, 0.9], [0.4, 0.7], [0.8, 0.8]])
    cost = np.tile([0.001, 0.01], (len(queries), 1))
    return KNNRouter(k=2, featurizer="tfidf").fit(RoutingDataset(queries, ["small", "large"], quality, cost))


def test_the_size_limit_is_enforced_and_can_be_raised(tmp_path):
    path = _fitted_router().save(tmp_path / "knn.npz")
    with pytest.raises(CorruptStateError, match="over the limit"):
        load_router(path, max_bytes=1000)
    with pytest.raises(CorruptStateError, match="over the limit"):
        decode_arrays(encode_arrays({"a": np.zeros(1000)}), max_bytes=1000)
    assert load_router(path).route_one("refund please").candidate in ("small", "large")


def _with_featurizer_model(router: KNNRouter, path, model: str):
    meta, arrays = router.to_state()
    meta["featurizer"] = {"type": "sentence_transformer", "model": model, "batch_size": 8}
    arrays = {k: v for k, v in arrays.items() if not k.startswith("featurizer.")}
    return write_state(path, meta, arrays)


@pytest.mark.parametrize("model", ["/etc", "../../../../tmp/evil-model", "some-org/unvetted-embedder"])
def test_a_saved_router_may_only_name_models_the_caller_allows(tmp_path, model):
    path = _with_featurizer_model(_fitted_router(), tmp_path / "named.npz", model)
    with pytest.raises(ModelNotAllowedError, match="allowed_models"):
        load_router(path)
    loaded = load_router(path, allowed_models=[model])  # explicit at load time: fine, and still not loaded
    assert loaded.featurizer_.name == model and loaded.featurizer_._model is None


def test_the_packaged_default_model_is_always_allowed(tmp_path):
    path = _with_featurizer_model(_fitted_router(), tmp_path / "default.npz", "all-MiniLM-L6-v2")
    assert load_router(path).featurizer_.name == "all-MiniLM-L6-v2"


def test_lam_stored_as_a_string_is_a_typed_error(tmp_path):
    router = _fitted_router()
    meta, arrays = router.to_state()
    meta["params"]["lam"] = "10"
    path = write_state(tmp_path / "lam.npz", meta, arrays)
    with pytest.raises(CorruptStateError, match="lam"):
        load_router(path)
    for lam in ("10", [1.0], complex(1, 1), True):
        with pytest.raises(InvalidInputError, match="lam"):
            router.route(["refund please"], lam=lam)


DEEP = "[" * 100_000 + "]" * 100_000


def test_deep_json_in_price_key_and_dataset_files_is_a_typed_error(tmp_path, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": ' + DEEP + "}")
    with pytest.raises(CorruptStateError, match="nested"):
        PriceTable.from_json(prices)
    with pytest.raises(CorruptStateError, match="cannot read"):
        PriceTable.from_json(tmp_path / "missing.json")
    keys = tmp_path / "keys.json"
    keys.write_text(DEEP)
    with pytest.raises(InvalidInputError, match="nested"):
        load_api_keys(keys)
    dataset = tmp_path / "data.jsonl"
    dataset.write_text('{"query": "q", "outcomes": {"a": {"quality": 1.0, "cost_usd": 0.1}}}\n' + DEEP + "\n")
    with pytest.raises(DatasetFormatError, match="line 2"):
        load_dataset(dataset, format="jsonl")
    routerdc = tmp_path / "routerdc.json"
    routerdc.write_text(DEEP)
    with pytest.raises(DatasetFormatError, match="nested"):
        load_dataset(routerdc, format="routerdc")
    assert main(["bench", "tests/fixtures/routing/routerbench_train.csv", "--routers", "knn", "--prices",
                 str(prices), "--quiet"]) == 2
    assert "nested" in capsys.readouterr().err
    state = io.BytesIO()
    np.savez(state, __meta__=np.frombuffer(DEEP.encode(), dtype=np.uint8))
    (tmp_path / "deep.npz").write_bytes(state.getvalue())
    with pytest.raises(CorruptStateError, match="nested"):
        read_state(tmp_path / "deep.npz")


def test_a_saved_dense_index_may_only_name_allowed_embedders(tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu (the retrieval extra) is not installed")
    import json

    from rag_routing.embeddings import TfidfFeaturizer
    from rag_routing.retrieval.dense import DenseRetriever
    from rag_routing.retrieval.documents import Document

    texts = ["paris is the capital of france", "cats sleep a lot", "vectors live in spaces", "bread needs yeast"]
    embedder = TfidfFeaturizer(n_components=2).fit(texts)
    folder = DenseRetriever(embedder).add_documents([Document(str(i), t) for i, t in enumerate(texts)]).save(
        tmp_path / "index")
    meta = json.loads((folder / "documents.json").read_text())
    meta["embedder"] = "../../../etc"
    (folder / "documents.json").write_text(json.dumps(meta))
    with pytest.raises(ModelNotAllowedError):
        DenseRetriever.load(folder)
    with pytest.warns(UserWarning, match="built with embedder"):  # given by the caller, so not checked
        assert DenseRetriever.load(folder, embedder=embedder).embedder_name == embedder.name
    assert DenseRetriever.load(folder, allowed_models=["../../../etc"]).embedder_name == "../../../etc"
    (folder / "documents.json").write_text(DEEP)
    with pytest.raises(CorruptStateError, match="nested"):
        DenseRetriever.load(folder, embedder=embedder)
