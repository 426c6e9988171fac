"""PromptRouter: validated structured output, declared fallbacks, never a silent misroute (the LlamaIndex
selector bug), the routing call's cost in the ledger; a fake paid API, LangChain's fake model, the local LLM."""

from __future__ import annotations

import pytest
from test_judges import FakeChat

from rag_routing.candidates import Candidate, Pricing
from rag_routing.errors import InvalidInputError, NoRouteError, UnknownCandidateError
from rag_routing.ledger import Budget, ledger_scope
from rag_routing.routers.generative import PromptRouter

CANDIDATES = [("chat", "small talk and general questions"), ("coder", "writes and debugs code"),
              ("math", "solves equations and proofs")]


def router(reply: str, **kwargs) -> PromptRouter:
    return PromptRouter(FakeChat(reply), CANDIDATES, **kwargs)


@pytest.mark.parametrize("reply, expected", [
    ('{"choice": "coder", "reason": "code"}', "coder"),
    ('```json\n{"choice": "math", "reason": "an equation"}\n```', "math"),
    ('Sure! Here you go: {"choice": "chat"} Hope it helps.', "chat"),
    ('{"choice": "Coder"}', "coder"),  # the same name, another case: not a misroute
    ("math", "math"),                  # a bare, exact candidate name
])
def test_valid_replies_route(reply, expected):
    decision = router(reply).route("Fix my Python loop")
    assert decision.candidate == expected and not decision.fallback and decision.router == "prompt"
    assert decision.quality[expected] == 1.0 and sum(decision.quality.values()) == 1.0


@pytest.mark.parametrize("reply, why", [
    ('{"choice": "gpt-5"}', "unknown candidate 'gpt-5'"),
    ('{"choice": 0}', "numeric choice"),   # LlamaIndex turns this into index -1: the last engine
    ('{"choice": 2}', "numeric choice"),
    ('{"choice": true}', "does not match"),
    ('{"reason": "no idea"}', "no 'choice'"),
    ("I think the coder, maybe math", "no JSON"),
    ("", "no JSON"),
])
def test_invalid_replies_take_the_declared_fallback(reply, why):
    decision = router(reply, fallback="chat").route("Fix my Python loop")
    assert decision.candidate == "chat" and decision.fallback and why in decision.reason
    assert "fell back to 'chat'" in decision.reason


def test_without_a_fallback_an_invalid_reply_is_an_error_not_a_route():
    with pytest.raises(NoRouteError, match="unknown candidate 'gpt-5'.*fallback"):
        router('{"choice": "gpt-5"}').route("hello")


def test_indices_only_when_declared_and_range_checked():
    indexed = lambda reply: router(reply, allow_index=True, fallback="chat")  # noqa: E731
    assert indexed('{"choice": 2}').route("q").candidate == "coder"  # 1-based, as listed in the prompt
    assert indexed('{"index": 3}').route("q").candidate == "math"
    for bad in ('{"choice": 0}', '{"choice": 4}', '{"choice": -1}'):
        decision = indexed(bad).route("q")
        assert decision.fallback and "out of range" in decision.reason
    zero_based = router('{"choice": 0}', allow_index=True, index_base=0)
    assert zero_based.route("q").candidate == "chat"
    assert "1. chat:" in router("x", allow_index=True).messages("q")[0]["content"]


def test_the_routing_call_is_the_routers_own_cost():
    fake = FakeChat('{"choice": "coder", "reason": "code"}')
    pool = [Candidate(name="chat", description="talk", pricing=Pricing(input_per_mtok=0.1, output_per_mtok=0.4)),
            Candidate(name="coder", description="code", pricing=Pricing(input_per_mtok=3.0, output_per_mtok=15.0))]
    with ledger_scope() as ledger:
        decision = PromptRouter(fake, pool).route("Why does my loop never end?")
    entry = ledger.entries[0]
    assert (entry.stage, entry.component, entry.decision_id) == ("routing", "prompt_router", decision.decision_id)
    assert decision.router_cost_usd == entry.cost_usd > 0
    assert decision.cost["coder"] > decision.cost["chat"] > 0
    assert "chat: talk" in fake.calls[0][0][0][1]


def test_a_refused_routing_call_falls_back_or_raises():
    with ledger_scope(budget=Budget(max_usd=1e-12)):
        decision = router('{"choice": "coder"}', fallback="chat").route("q")
        assert decision.fallback and "refused" in decision.reason and decision.router_cost_usd == 0.0
        with pytest.raises(NoRouteError, match="refused"):
            router('{"choice": "coder"}').route("q")


async def test_async_and_the_langchain_fake_model():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    model = GenericFakeChatModel(messages=iter([AIMessage(content='{"choice": "math", "reason": "algebra"}')]))
    decision = await PromptRouter(model, dict(CANDIDATES), model="gpt-4o-mini").aroute("Solve x^2 = 4")
    assert decision.candidate == "math" and "algebra" in decision.reason


def test_construction_is_checked():
    with pytest.raises(UnknownCandidateError):
        router("x", fallback="nobody")
    with pytest.raises(InvalidInputError):
        PromptRouter(FakeChat("x"), [("a", "x"), ("a", "y")])
    with pytest.raises(InvalidInputError):
        router("x").route("   ")


@pytest.mark.slow
def test_the_local_model_as_router_never_misroutes():
    pytest.importorskip("transformers")
    from rag_routing.llms import LocalLLM

    prompt_router = PromptRouter(LocalLLM(), CANDIDATES, fallback="chat", max_tokens=32)
    with ledger_scope() as ledger:
        decisions = prompt_router.route_batch(["Write a Python function that reverses a list.", "Solve 3x + 5 = 11."])
    names = {name for name, _ in CANDIDATES}
    for decision in decisions:
        assert decision.candidate in names
        assert decision.fallback or prompt_router.parse(decision.metadata["reply"])[0] == decision.candidate
    assert [e.stage for e in ledger.entries] == ["routing"] * 2 and all(e.cost_usd == 0 for e in ledger.entries)
