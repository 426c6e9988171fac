"""`POST /v1/feedback`: an online router learns from feedback on its own routed decisions, only from the
principal whose request was routed; everything else is a typed 400."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
httpx = pytest.importorskip("httpx")

from test_server import KEY, POOR_KEY, LiveServer, chat, make_app, toy_dataset  # noqa: E402

from rag_routing.routers.registry import create_router  # noqa: E402


def test_feedback_updates_the_bandit_for_its_own_principal_only():
    router = create_router("epsilon_greedy", epsilon=0.0, lam=10.0).fit(toy_dataset())
    app, _ = make_app(router)
    headers = {"Authorization": f"Bearer {KEY}"}
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        first = chat(client, "anything").json()
        decision = first["x_rag_routing"]["decision_id"]
        stolen = client.post("/v1/feedback", json={"decision_id": decision, "reward": -5.0},
                             headers={"Authorization": f"Bearer {POOR_KEY}"})
        assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "decision_not_found"
        for bad in ({"decision_id": decision}, {"decision_id": decision, "reward": "1"},
                    {"decision_id": decision, "reward": 1.0, "quality": 1.0}, {"decision_id": decision, "x": 1}):
            response = client.post("/v1/feedback", json=bad, headers=headers)
            assert response.status_code == 400, response.text
        models = [first["model"]]
        for _ in range(30):
            learned = client.post("/v1/feedback", json={"decision_id": decision, "reward": -5.0}, headers=headers)
            assert learned.status_code == 200 and learned.json()["reward"] == -5.0
            again = client.post("/v1/feedback", json={"decision_id": decision, "reward": -5.0}, headers=headers)
            assert again.status_code == 400  # one feedback per decision
            answer = chat(client, "anything").json()
            models.append(answer["model"])
            decision = answer["x_rag_routing"]["decision_id"]
            if answer["model"] != "large":
                break
    assert models[0] == "large" and models[-1] == "small"


def test_feedback_to_a_router_that_does_not_learn_is_refused():
    app, _ = make_app()
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        decision = chat(client, "hello").json()["x_rag_routing"]["decision_id"]
        response = client.post("/v1/feedback", json={"decision_id": decision, "reward": 1.0},
                               headers={"Authorization": f"Bearer {KEY}"})
        unauthenticated = client.post("/v1/feedback", json={"decision_id": decision, "reward": 1.0})
    assert response.status_code == 400 and "does not learn" in response.json()["error"]["message"]
    assert unauthenticated.status_code == 401
