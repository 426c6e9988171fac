"""RouterRunnable: a fitted rag_routing router as a LangChain branch between chat models."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from rag_routing.decision import RoutingDecision  # noqa: E402
from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError  # noqa: E402
from rag_routing.integrations.langchain import LedgerCallbackHandler, RouterRunnable, as_runnable  # noqa: E402
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.routers.similarity import KNNRouter  # noqa: E402
from rag_routing.routers.supervised import ClassifierRouter  # noqa: E402

MATH = "solve the integral of x^7 times sin(x) dx"
CHAT = "hello, how are you doing today my friend"


@pytest.fixture
def router(toy_dataset: Any) -> KNNRouter:
    """Math queries -> "large" (only it is right), chat -> "small" (both right, small is cheaper)."""
    return KNNRouter(k=5, prior=0.0, featurizer="tfidf", lam=10.0).fit(toy_dataset)


def models() -> dict[str, Any]:
    """Two fake chat models, each priced into the ambient ledger by its own LedgerCallbackHandler (the fake
    drops the model name when it streams, hence ``default_model``)."""
    usage = {"input_tokens": 30, "output_tokens": 3, "total_tokens": 33}
    out = {}
    for name, model in (("small", "gpt-4o-mini"), ("large", "gpt-4o")):
        message = AIMessage(f"{name} answer", usage_metadata=usage, response_metadata={"model_name": model})
        chat = GenericFakeChatModel(messages=iter([message] * 20))
        out[name] = chat.with_config(callbacks=[LedgerCallbackHandler(default_model=model)])
    return out


class Tags(BaseCallbackHandler):
    def __init__(self) -> None:
        self.runs: list[tuple[str | None, list[str], dict[str, Any]]] = []
        self.events: list[Any] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, tags: Any = None, metadata: Any = None,
                            **kwargs: Any) -> None:
        self.runs.append(("chat", list(tags or []), dict(metadata or {})))

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append(data)


async def test_prompt_router_parser_chain_sends_each_query_to_the_right_model(router: KNNRouter) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
    chain = prompt | RouterRunnable(router, models()) | StrOutputParser()
    assert chain.invoke({"question": MATH}) == "large answer"
    assert chain.invoke({"question": CHAT}) == "small answer"
    assert await chain.ainvoke({"question": MATH}) == "large answer"
    assert chain.batch([{"question": CHAT}, {"question": MATH}]) == ["small answer", "large answer"]
    assert await chain.abatch([{"question": CHAT}, {"question": MATH}]) == ["small answer", "large answer"]
    assert "".join(chain.stream({"question": MATH})) == "large answer"
    assert len(list(chain.stream({"question": MATH}))) > 1  # the chosen model's own chunks
    assert "".join([c async for c in chain.astream({"question": CHAT})]) == "small answer"


def test_child_run_is_tagged_with_the_route_and_the_decision_is_an_event(router: KNNRouter) -> None:
    seen = Tags()
    node = RouterRunnable(router, models())
    node.invoke(MATH, config={"callbacks": [seen], "tags": ["outer"], "metadata": {"user": "u"}})
    (kind, tags, metadata), = seen.runs
    assert "route:large" in tags and "outer" in tags and metadata["user"] == "u"
    assert metadata["rag_route"] == "large" and metadata["rag_router"] == "knn"
    assert seen.events[0]["choice"] == "large" and seen.events[0]["decision_id"] == metadata["rag_decision_id"]


async def test_the_decision_and_the_chosen_call_land_in_the_ambient_ledger(router: KNNRouter) -> None:
    node = RouterRunnable(router, models())
    with ledger_scope() as ledger:
        node.invoke(MATH)
        await node.ainvoke(CHAT)
        list(node.stream(MATH))
        [c async for c in node.astream(CHAT)]
    routing = [e for e in ledger.entries if e.stage == "routing"]
    calls = [e for e in ledger.entries if e.stage == "generation"]
    assert len(routing) == 4 and all(e.component == "router/knn" and e.seconds > 0 for e in routing)
    assert [e.metadata["choice"] for e in routing] == ["large", "small", "large", "small"]
    assert [e.model for e in calls] == ["gpt-4o", "gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert [e.estimated for e in calls] == [False, False, True, True]  # the fake reports no usage when streaming
    # every call carries the id of the decision that chose it (also when streamed)
    assert [e.decision_id for e in calls] == [e.decision_id for e in routing]


def test_candidates_and_runnables_must_match_when_built(router: KNNRouter) -> None:
    with pytest.raises(UnknownCandidateError, match="candidates without a runnable"):
        RouterRunnable(router, {"small": FakeListChatModel(responses=["x"])})
    with pytest.raises(UnknownCandidateError, match="not candidates"):
        RouterRunnable(router, {**models(), "medium": FakeListChatModel(responses=["x"])})
    unfitted = RouterRunnable(KNNRouter(featurizer="tfidf"), models())  # checked when it routes
    with pytest.raises(NotFittedError):
        unfitted.invoke(MATH)
    with pytest.raises(InvalidInputError):
        RouterRunnable(object(), models())


def test_without_runnables_the_node_returns_the_decision(router: KNNRouter) -> None:
    decision = as_runnable(router).invoke(MATH)
    assert isinstance(decision, RoutingDecision) and decision.candidate == "large"
    assert list(as_runnable(router).stream(CHAT))[0].candidate == "small"


def test_query_is_read_from_many_input_shapes(router: KNNRouter, toy_dataset: Any) -> None:
    node = RouterRunnable(router, {"small": RunnableLambda(lambda x: "S"), "large": RunnableLambda(lambda x: "L")})
    prompt = ChatPromptTemplate.from_messages([("system", "solve integrals"), ("human", "{q}")])
    assert node.invoke(prompt.invoke({"q": CHAT})) == "S"  # the last human message, not the system one
    assert node.invoke({"input": MATH}) == "L"
    assert RouterRunnable(router, node.runnables, input_key="text").invoke({"text": MATH}) == "L"
    assert RouterRunnable(router, node.runnables, query=lambda x: x[1]).invoke((0, MATH)) == "L"
    # what a chat model accepts: ("role", text) tuples and role dicts; the last human message is routed
    assert node.invoke([("system", "solve integrals"), ("human", CHAT)]) == "S"
    assert node.invoke([("human", MATH)]) == "L"
    assert node.invoke([{"role": "user", "content": MATH}]) == "L"
    with pytest.raises(InvalidInputError, match="chat messages"):
        node.invoke([("nobody", MATH)])
    with pytest.raises(InvalidInputError, match="input_key"):
        node.invoke({"other": MATH})
    with pytest.raises(InvalidInputError):
        node.invoke("   ")
    classifier = ClassifierRouter(mode="direct", featurizer="tfidf").fit(toy_dataset)
    assert RouterRunnable(classifier, node.runnables).invoke(MATH) == "L"
