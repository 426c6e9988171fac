"""The `rag-routing serve` wiring: arguments -> an app built from a saved router, a keys file and store URLs."""

from __future__ import annotations

import argparse
import json

import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
httpx = pytest.importorskip("httpx")

from test_server import KEY, LiveServer, chat, toy_dataset  # noqa: E402

from rag_routing.errors import CorruptStateError, InvalidInputError  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402
from rag_routing.server.launch import add_serve_arguments, build_app  # noqa: E402


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rag-routing")
    add_serve_arguments(parser.add_subparsers(dest="command").add_parser("serve"))
    return parser.parse_args(["serve", *argv])


@pytest.fixture
def files(tmp_path):
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({KEY: {"principal": "alice", "max_usd": 1.0}}))
    return str(router.save(tmp_path / "router.npz")), str(keys), tmp_path


def test_serve_builds_a_working_app_from_files(files):
    router, keys, folder = files
    args = parse(router, "--keys", keys, "--generator", "small=echo", "--generator", "large=echo", "--ledger",
                 f"sqlite:{folder / 'ledger.db'}", "--budgets", f"sqlite:{folder / 'budgets.db'}", "--quota", "1")
    app = build_app(args)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        first = chat(client, "solve the integral of x^3 times sin(x) dx").json()
        second = chat(client, "solve the integral of x^4 times sin(x) dx").json()
    assert first["model"] == "large" and second["model"] == "small"  # --quota 1
    assert first["choices"][0]["message"]["content"] == "solve the integral of x^3 times sin(x) dx"  # echo
    from rag_routing.ledger import SQLiteBudgetStore, SQLiteStore

    assert len(SQLiteStore(folder / "ledger.db", namespace="serve")) == 4  # route + generate, twice
    assert SQLiteBudgetStore(folder / "budgets.db").snapshot("principal:alice")[0].usd > 0


def test_serve_refuses_bad_arguments(files, tmp_path):
    router, keys, _ = files
    for argv in (["--generator", "nonsense"], ["--generator", "gpt-9=echo"], ["--ledger", "ftp://x"],
                 ["--budgets", "mongo://x"]):
        with pytest.raises(InvalidInputError):
            build_app(parse(router, "--keys", keys, "--generator", "small=echo", "--generator", "large=echo",
                            *argv))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a router")
    with pytest.raises(CorruptStateError):
        build_app(parse(str(broken), "--keys", keys))
    bad_keys = tmp_path / "bad.json"
    bad_keys.write_text(json.dumps({"short": "alice"}))
    with pytest.raises(InvalidInputError, match="8\\+ characters"):
        build_app(parse(router, "--keys", str(bad_keys), "--generator", "small=echo", "--generator", "large=echo"))
