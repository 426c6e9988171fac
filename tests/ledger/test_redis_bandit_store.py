"""RedisBanditStore: the bandit state-store protocol on a real redis-server, shared by routers in several
threads and processes, exactly-once under retries, durable across a kill -9."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from redis_fixture import redis_server_fixture  # noqa: F401  (registers the fixture)

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.ledger.redis_bandit_store import RedisBanditStore

pytest.importorskip("redis", reason="the redis client is an optional extra: pip install 'rag-routing[redis]'")
bandits = pytest.importorskip("rag_routing.routers.bandits")


def add_one(state):
    state = {"counts": np.zeros(2)} if state is None else state
    state["counts"][1] += 1
    return state


def test_protocol_round_trip_and_versions(redis_server):
    store = RedisBanditStore(redis_server.url)
    assert isinstance(store, bandits.BanditStateStore)
    assert store.get("k") is None and store.version("k") == 0
    store.put("k", {"a": np.arange(3.0), "b": np.eye(2)})
    got = store.get("k")
    assert got["a"].tolist() == [0.0, 1.0, 2.0] and got["b"].shape == (2, 2) and store.version("k") == 1
    assert store.update("k", lambda s: {**s, "a": s["a"] * 2})["a"].tolist() == [0.0, 2.0, 4.0]
    assert store.version("k") == 2
    store.delete("k")
    assert store.get("k") is None
    with pytest.raises(InvalidInputError):
        store.put("k", {"bad": np.array([object()], dtype=object)})


def test_a_retry_after_a_lost_reply_learns_once(redis_server, monkeypatch):
    store = RedisBanditStore(redis_server.url)
    original = store.connection.call

    def lose_first_reply(command, **kwargs):
        command(store.connection.client)  # applied, but the reply is "lost": the client retries
        return original(command, **kwargs)

    monkeypatch.setattr(store.connection, "call", lose_first_reply)
    store.update("k", add_one)
    monkeypatch.undo()
    assert store.get("k")["counts"].tolist() == [0.0, 1.0]


def test_concurrent_updates_from_threads_are_never_lost(redis_server):
    store = RedisBanditStore(redis_server.url)
    threads = [threading.Thread(target=lambda: [store.update("k", add_one) for _ in range(25)]) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("k")["counts"][1] == 150 and store.version("k") == 150


CHILD = textwrap.dedent(
    """
    import sys
    from rag_routing.routers.bandits import EpsilonGreedyRouter
    from rag_routing.ledger.redis_bandit_store import RedisBanditStore
    store = RedisBanditStore(sys.argv[1], retry_seconds=20)
    router = EpsilonGreedyRouter(epsilon=0.5, seed=int(sys.argv[2]), lam=1.0)
    router.start(["small", "large"], cost=[0.01, 0.2])
    router.use_store(store, "shared")
    for _ in range(40):
        d = router.route(["q"])[0]
        router.update(d.decision_id, quality=1.0 if d.candidate == "large" else 0.5)
    print("ok", flush=True)
    """
)


def test_bandits_in_several_processes_learn_as_one(redis_server):
    seed = bandits.EpsilonGreedyRouter(lam=1.0).start(["small", "large"], cost=[0.01, 0.2])
    seed.use_store(RedisBanditStore(redis_server.url), "shared")  # one prior state for everyone
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, redis_server.url, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    state = RedisBanditStore(redis_server.url).get(seed.store_key)
    assert state["counts"].sum() == 4 * 40  # every update of every process was kept
    assert state["values"][1] == pytest.approx(1.0) and state["values"][0] == pytest.approx(0.5)


def test_state_survives_a_kill_and_restart(redis_server):
    store = RedisBanditStore(redis_server.url, retry_seconds=20)
    for _ in range(10):
        store.update("k", add_one)
    redis_server.restart(down_seconds=0.3)
    store.update("k", add_one)  # waits for the restarted server, then carries on
    assert store.get("k")["counts"][1] == 11


def test_corrupt_state_is_a_typed_error(redis_server):
    store = RedisBanditStore(redis_server.url)
    store.connection.client.hset("rag_routing:bandit_state:{k}", mapping={"data": b"\x00garbage", "version": 1})
    with pytest.raises(CorruptStateError, match="readable"):
        store.get("k")
    with pytest.raises(CorruptStateError):
        store.update("k", add_one)
