"""Corrupt saved routers and ledgers: a typed CorruptStateError, nothing committed lost, and never code run
from a file (no pickle of untrusted data)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import typed_or_valid  # tolerates only the documented KNOWN_BUGS

from rag_routing.errors import CorruptStateError, InvalidInputError, RagRoutingError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.ledger import CostLedger, SQLiteStore
from rag_routing.routers.base import load_router
from rag_routing.routers.persistence import read_state, write_state
from rag_routing.routers.registry import create_router

EXPLORE = int(os.environ.get("HYPOTHESIS_EXPLORE", "0"))  # deterministic in CI unless set
SETTINGS = settings(max_examples=EXPLORE or 40, deadline=None, derandomize=not EXPLORE,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def toy() -> RoutingDataset:
    math_q = [f"solve the integral of x^{i} times sin(x) dx" for i in range(10)]
    chat_q = [f"hello, how are you doing today friend number {i}" for i in range(10)]
    return RoutingDataset(math_q + chat_q, ["small", "large"], [[0.0, 1.0]] * 10 + [[1.0, 1.0]] * 10,
                          [[0.001, 0.02]] * 20)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes of a few fitted, saved routers (TF-IDF features: no model download)."""
    folder = tmp_path_factory.mktemp("routers")
    out = {}
    for name, kwargs in (("knn", {"k": 3}), ("mf", {"dim": 4, "epochs": 3}), ("best", {})):
        kwargs = {**kwargs, **({"featurizer": "tfidf"} if name != "best" else {})}
        try:
            router = create_router(name, **kwargs).fit(toy())
        except TypeError:  # a router without those hyper-parameters
            router = create_router(name, **({"featurizer": "tfidf"} if name != "best" else {})).fit(toy())
        out[name] = router.save(folder / name).read_bytes()
    return out


def load_bytes(data: bytes, tmp_path: Path) -> Any:
    path = tmp_path / "router.npz"
    path.write_bytes(data)
    return load_router(path)


@SETTINGS
@given(name=st.sampled_from(["knn", "mf", "best"]), cut=st.floats(0.0, 0.999))
def test_truncated_saved_routers_are_corrupt(saved, tmp_path, name, cut):
    data = saved[name]
    with pytest.raises(CorruptStateError):
        load_bytes(data[: int(len(data) * cut)], tmp_path)


@SETTINGS
@given(name=st.sampled_from(["knn", "mf", "best"]), position=st.floats(0.0, 0.999), byte=st.integers(0, 255))
def test_a_flipped_byte_is_caught_or_harmless(saved, tmp_path, name, position, byte):
    data = bytearray(saved[name])
    i = int(len(data) * position)
    data[i] = byte
    router = typed_or_valid(load_bytes, bytes(data), tmp_path)
    if router is None:
        return
    assert router.route_one("hello friend").candidate in ("small", "large")  # the change was harmless


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_are_corrupt(tmp_path, data):
    with pytest.raises(CorruptStateError):
        load_bytes(data, tmp_path)


def _rewrite_meta(path: Path, change: Any) -> None:
    meta, arrays = read_state(path)
    meta = change(meta)
    meta.pop("format_version", None)
    write_state(path, meta, arrays)


WRONG_META = {
    "router-name-is-a-list": lambda m: {**m, "router": ["knn"]},
    "unknown-router": lambda m: {**m, "router": "os.system"},
    "class-mismatch": lambda m: {**m, "class": "builtins:eval"},
    "params-not-a-dict": lambda m: {**m, "params": "k=3"},
    "unknown-param": lambda m: {**m, "params": {**m["params"], "__class__": "x"}},
    "param-of-wrong-type": lambda m: {**m, "params": {**m["params"], "k": "three"}},
    "candidates-not-a-list": lambda m: {**m, "candidates": 5},
    "one-candidate-too-many": lambda m: {**m, "candidates": [*m["candidates"], "extra"]},
    "featurizer-missing": lambda m: {k: v for k, v in m.items() if k != "featurizer"},
    "featurizer-type-unknown": lambda m: {**m, "featurizer": {"type": "pickle"}},
    "tfidf-terms-not-a-list": lambda m: {**m, "featurizer": {**m["featurizer"], "terms": 3}},
    "tfidf-terms-too-short": lambda m: {**m, "featurizer": {**m["featurizer"], "terms": ["a"]}},
    "meta-is-a-list": lambda m: [m],
}


@pytest.mark.parametrize("change", sorted(WRONG_META))
def test_wrong_types_in_the_saved_json_are_corrupt(saved, tmp_path, change):
    path = tmp_path / "knn.npz"
    path.write_bytes(saved["knn"])
    if change == "meta-is-a-list":
        encoded = np.frombuffer(json.dumps([{"format_version": 1}]).encode(), dtype=np.uint8)
        with zipfile.ZipFile(path, "w") as archive:
            buffer = io.BytesIO()
            np.save(buffer, encoded)
            archive.writestr("__meta__.npy", buffer.getvalue())
    else:
        _rewrite_meta(path, WRONG_META[change])
    with pytest.raises(CorruptStateError):
        load_router(path)


def test_missing_arrays_and_wrong_shapes_are_corrupt(saved, tmp_path):
    path = tmp_path / "knn.npz"
    path.write_bytes(saved["knn"])
    meta, arrays = read_state(path)
    meta.pop("format_version")
    for broken in ({k: v for k, v in arrays.items() if k != "state.train_quality"},
                   {**arrays, "state.train_quality": arrays["state.train_quality"][:, :1]},
                   {**arrays, "mean_cost": np.zeros(5)},
                   {**arrays, "featurizer.idf": arrays["featurizer.idf"][:3]}):
        write_state(path, meta, broken)
        with pytest.raises(CorruptStateError):
            load_router(path)


class _Exploit:
    """Unpickling this would create a marker file: loading must never do it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_loading_never_unpickles(saved, tmp_path):
    marker = tmp_path / "pwned"
    payload = np.array([_Exploit(str(marker))], dtype=object)
    path = tmp_path / "evil.npz"
    path.write_bytes(saved["knn"])
    with zipfile.ZipFile(path, "a") as archive:  # an object array (pickled) next to the real state
        buffer = io.BytesIO()
        np.save(buffer, payload, allow_pickle=True)
        archive.writestr("state.train_features.npy", buffer.getvalue())
    raw = tmp_path / "raw.npz"  # and a bare pickle renamed .npz
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    for candidate in (path, raw):
        with pytest.raises(CorruptStateError):
            load_router(candidate)
    assert not marker.exists()


@pytest.mark.parametrize("field, value", [(6, 65), (8, 1)], ids=["version-6.5", "encrypted-flag"])
def test_b10_damaged_zip_header(saved, tmp_path, field, value):
    data = bytearray(saved["best"])
    central = data.rfind(b"PK\x01\x02")  # the last central-directory entry
    data[central + field] = value
    with pytest.raises(CorruptStateError):
        load_bytes(bytes(data), tmp_path)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="no saved router"):
        load_router(tmp_path / "nothing-here.npz")


# -- ledgers ---------------------------------------------------------------------------------------------------
@pytest.fixture
def ledger_file(tmp_path: Path) -> tuple[Path, list[Any]]:
    path = tmp_path / "ledger.db"
    ledger = CostLedger(store=SQLiteStore(path))
    for i in range(30):
        ledger.record("generate", "m", input_tokens=i, cost_usd=0.01 * i, metadata={"i": i})
    ledger.store.close()
    return path, list(ledger.entries)


@settings(max_examples=EXPLORE or 25, deadline=None, derandomize=not EXPLORE,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.01, 0.99))
def test_a_truncated_ledger_is_corrupt_and_the_original_keeps_everything(ledger_file, tmp_path, cut):
    path, entries = ledger_file
    copy = tmp_path / f"truncated-{cut}.db"
    data = path.read_bytes()
    copy.write_bytes(data[: max(1, int(len(data) * cut))])
    try:
        store = SQLiteStore(copy)
        loaded = store.load_entries()
        store.close()
    except CorruptStateError:
        loaded = None
    assert loaded is None or loaded == entries[: len(loaded)]  # never a wrong entry, only fewer or an error
    assert SQLiteStore(path).load_entries() == entries  # nothing committed lost in the original


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 100, b"SQLite format 3\x00" + os.urandom(2000),
                                     b"not a database at all" * 50])
def test_a_foreign_or_garbage_ledger_file_is_corrupt(tmp_path, garbage):
    path = tmp_path / "ledger.db"
    path.write_bytes(garbage)
    if garbage == b"":
        assert SQLiteStore(path).load_entries() == []  # an empty file is a new, empty ledger
        return
    with pytest.raises(CorruptStateError):
        SQLiteStore(path).load_entries()


@pytest.mark.parametrize("sql", [
    "UPDATE ledger_entries SET metadata = 'not json' WHERE seq = 3",
    "UPDATE ledger_entries SET stage = '' WHERE seq = 3",
    "UPDATE ledger_entries SET cost_usd = 'lots' WHERE seq = 3",
    "UPDATE ledger_meta SET value = '99' WHERE key = 'schema_version'",
    "DROP TABLE ledger_entries",
])
def test_tampered_rows_are_corrupt_not_silently_skipped(ledger_file, tmp_path, sql):
    path, _ = ledger_file
    copy = tmp_path / "tampered.db"
    shutil.copy(path, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute(sql)
    with pytest.raises(CorruptStateError):
        SQLiteStore(copy).load_entries()


def test_a_refused_entry_leaves_the_ledger_file_intact(ledger_file):
    path, entries = ledger_file
    ledger = CostLedger.from_store(SQLiteStore(path))
    for bad in ({"cost_usd": float("nan")}, {"input_tokens": -1}, {"seconds": float("inf")}):
        with pytest.raises(RagRoutingError):
            ledger.record("generate", "m", **bad)
    ledger.record("generate", "m", cost_usd=1.0)
    assert SQLiteStore(path).load_entries()[:30] == entries and len(SQLiteStore(path)) == 31
