"""StageRunnable / PipelineRunnable / as_runnable: LCEL chains of real stage routers (BM25, a fitted router)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.integrations.langchain import (  # noqa: E402
    ChatModelLLM,
    PipelineRunnable,
    RAGStateChunk,
    StageRunnable,
    as_runnable,
)
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever  # noqa: E402
from rag_routing.routers.similarity import KNNRouter  # noqa: E402
from rag_routing.stages import (  # noqa: E402
    ContextRouter,
    GeneratorRouter,
    PromptStrategyRouter,
    RAGState,
    RetrievalStrategyRouter,
    RoutedRAG,
    StageRouter,
)

DOCS = [
    {"_id": "peru", "text": "Lima is the capital of Peru."},
    {"_id": "ecuador", "text": "Quito is the capital of Ecuador."},
    {"_id": "andes", "text": "The Andes run through Peru, Ecuador and Chile."},
]
SIMPLE = "What is the capital of Peru?"
HARD = "Compare the capitals of Peru and Ecuador and explain which is higher and why"


def reply(text: str, model: str) -> AIMessage:
    return AIMessage(text, usage_metadata={"input_tokens": 40, "output_tokens": 4, "total_tokens": 44},
                     response_metadata={"model_name": model})


def fake_chat(text: str, model: str) -> ChatModelLLM:
    return ChatModelLLM(GenericFakeChatModel(messages=itertools.cycle([reply(text, model)])), model_name=model)


def generator_router() -> KNNRouter:
    """Short factual questions -> the small model; comparisons and explanations -> the large one."""
    simple = ["what is the capital of peru", "what is the capital of chile", "who wrote hamlet", "capital of france"]
    hard = ["compare the economies of peru and chile and explain why", "explain why the andes formed and compare",
            "compare two capitals and explain which is older", "explain and compare the rivers of ecuador"]
    ds = RoutingDataset(simple + hard, ["small", "large"], [[1, 1]] * 4 + [[0, 1]] * 4,
                        np.tile([0.0001, 0.01], (8, 1)))
    return KNNRouter(k=2, prior=0.0, featurizer="tfidf", lam=10.0).fit(ds)


@pytest.fixture
def stages() -> list[StageRouter]:
    bm25 = BM25Retriever(name="bm25").add_documents(DOCS)
    generator = GeneratorRouter({"small": fake_chat("Lima", "gpt-4o-mini"),
                                 "large": fake_chat("Quito is higher than Lima", "gpt-4o")},
                                router=generator_router())
    return [RetrievalStrategyRouter(bm25, k=1), ContextRouter(), PromptStrategyRouter(), generator]


@pytest.fixture
def chain(stages: list[StageRouter]) -> Any:
    first, *rest = [StageRunnable(s) for s in stages]
    for node in rest:
        first = first | node
    return first


class Recorder(BaseCallbackHandler):
    """Keeps every chain / chat-model start with its tags and metadata, and every custom event."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.ends: list[Any] = []
        self.errors: list[BaseException] = []
        self.events: list[tuple[str, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None,
                       tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        self.starts.append({"kind": "chain", "name": kwargs.get("name"), "run_id": run_id, "parent": parent_run_id,
                            "tags": list(tags or []), "metadata": dict(metadata or {})})

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, parent_run_id: Any = None,
                            tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        self.starts.append({"kind": "chat", "name": kwargs.get("name"), "run_id": run_id, "parent": parent_run_id,
                            "tags": list(tags or []), "metadata": dict(metadata or {})})

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.ends.append(outputs)

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))

    def named(self, name: str) -> dict[str, Any]:
        return next(s for s in self.starts if s["name"] == name)


# -- one answer whatever the call ---------------------------------------------------------------------------
async def test_invoke_ainvoke_batch_abatch_stream_astream_agree(chain: Any) -> None:
    expected = {SIMPLE: "Lima", HARD: "Quito is higher than Lima"}
    for query, answer in expected.items():
        out = chain.invoke(query)
        assert out.answer == answer
        assert (await chain.ainvoke(query)).answer == answer
        streamed = list(chain.stream(query))
        assert streamed[-1].is_final and streamed[-1].state.answer == answer
        assert [c.state for c in streamed[:-1]] == [None] * (len(streamed) - 1)
        total = sum(streamed[1:], streamed[0])
        assert total.answer_delta == answer and total.state.answer == answer  # tokens add up to the answer
        astreamed = [c async for c in chain.astream(query)]
        assert "".join(c.answer_delta for c in astreamed) == answer and astreamed[-1].state.answer == answer
        assert out.choices() == streamed[-1].state.choices() == astreamed[-1].state.choices()
    assert [s.answer for s in chain.batch([SIMPLE, HARD])] == list(expected.values())
    assert [s.answer for s in await chain.abatch([SIMPLE, HARD])] == list(expected.values())
    assert chain.invoke(SIMPLE).choices()["generator"] == "small"
    assert chain.invoke(HARD).choices()["generator"] == "large"


def test_generator_tokens_stream_before_the_final_state(chain: Any) -> None:
    chunks = list(chain.stream(HARD))
    deltas = [c.answer_delta for c in chunks if not c.is_final]
    assert deltas == ["Quito", " ", "is", " ", "higher", " ", "than", " ", "Lima"]
    assert {c.node for c in chunks} == {"generator"}
    assert len({c.llm_run_id for c in chunks if not c.is_final}) == 1


# -- runs, tags, metadata, decisions ------------------------------------------------------------------------
def test_chosen_option_is_a_child_run_tagged_with_the_choice(chain: Any) -> None:
    recorder = Recorder()
    out = chain.invoke(HARD, config={"callbacks": [recorder], "tags": ["req-7"], "metadata": {"user": "u1"}})
    stage_run, option_run = recorder.named("generator"), recorder.named("generator:large")
    assert option_run["parent"] == stage_run["run_id"]
    assert "option:large" in option_run["tags"] and "option:large" not in stage_run["tags"]
    assert option_run["metadata"]["rag_choice"] == "large" and option_run["metadata"]["rag_stage"] == "generator"
    # config reaches the chosen child and everything below it: tags, metadata, callbacks
    chat = next(s for s in recorder.starts if s["kind"] == "chat")
    assert chat["parent"] == option_run["run_id"]
    assert "req-7" in chat["tags"] and chat["metadata"]["user"] == "u1"
    assert chat["metadata"]["rag_decision_id"] == option_run["metadata"]["rag_decision_id"]
    # the decision: a custom event, and the output's trace step
    decision = dict(recorder.events)["rag_routing_decision"]  # the last stage's (generator) event
    assert decision["stage"] == "generator" and decision["choice"] == "large"
    assert decision["decision"]["candidate"] == "large" and decision["decision"]["quality"]
    assert out.steps("generator")[0].decision["candidate"] == "large"
    assert out.steps("generator")[0].decision_id == option_run["metadata"]["rag_decision_id"]
    assert [name for name, _ in recorder.events].count("rag_routing_decision") == 4


async def test_async_runs_and_decisions_match_sync(chain: Any) -> None:
    sync, aio = Recorder(), Recorder()
    chain.invoke(SIMPLE, config={"callbacks": [sync]})
    await chain.ainvoke(SIMPLE, config={"callbacks": [aio]})
    assert [(s["name"], s["tags"]) for s in sync.starts] == [(s["name"], s["tags"]) for s in aio.starts]
    assert [e[1]["choice"] for e in sync.events] == [e[1]["choice"] for e in aio.events]


def test_runnable_options_get_the_child_config_directly() -> None:
    seen: list[dict[str, Any]] = []

    def answer(state: RAGState, config: Any) -> RAGState:
        seen.append(config)
        return state.evolve(answer="A")

    stage = StageRouter({"a": RunnableLambda(answer, name="answer_a"),
                         "b": RunnableLambda(lambda s: s.evolve(answer="B"))}, name="pick")
    recorder = Recorder()
    out = StageRunnable(stage).invoke("q", config={"callbacks": [recorder], "tags": ["outer"]})
    assert out.answer == "A" and out.choices() == {"pick": "a"}
    run = recorder.named("answer_a")
    assert run["parent"] == recorder.named("pick")["run_id"] and "option:a" in run["tags"]
    assert seen[0]["metadata"]["rag_stage"] == "pick" and "outer" in seen[0]["tags"]


def test_an_option_error_closes_the_run_and_propagates() -> None:
    def boom(state: RAGState) -> RAGState:
        raise RuntimeError("option failed")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="option failed"):
        StageRunnable(StageRouter({"boom": boom}, name="s")).invoke("q", config={"callbacks": [recorder]})
    assert len(recorder.errors) == 2  # the option's run and the stage's run
    with pytest.raises(RuntimeError, match="option failed"):
        list(StageRunnable(StageRouter({"boom": boom}, name="s")).stream("q"))


# -- one ledger -----------------------------------------------------------------------------------------------
async def test_every_stage_records_into_one_ledger_and_the_trace_adds_up(chain: Any) -> None:
    with ledger_scope() as ledger:
        out = chain.invoke(HARD)
        aout = await chain.ainvoke(SIMPLE)
        sout = list(chain.stream(SIMPLE))[-1].state
    stages = {e.stage for e in ledger.entries}
    assert {"routing", "retrieval", "generation"} <= stages
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert [e.model for e in generation] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    assert generation[0].cost_usd == pytest.approx((40 * 2.5 + 4 * 10.0) / 1e6)
    assert generation[0].decision_id == out.steps("generator")[0].decision_id
    for state in (out, aout, sout):
        ids = {i for step in state.trace for i in step.entry_ids}
        total = sum(e.cost_usd for e in ledger.entries if e.entry_id in ids)
        assert state.cost()["usd"] == pytest.approx(total)
    assert ledger.totals()["cost_usd"] == pytest.approx(sum(s.cost()["usd"] for s in (out, aout, sout)))


# -- inputs, composition, errors -----------------------------------------------------------------------------
def test_inputs_dicts_states_chunks_and_schemas(chain: Any, stages: list[StageRouter]) -> None:
    assert chain.invoke({"question": SIMPLE}).answer == "Lima"
    retrieved = StageRunnable(stages[0]).invoke(RAGState(query=SIMPLE))
    assert retrieved.document_ids == ["peru"]
    final = RAGStateChunk(state=retrieved)
    assert StageRunnable(stages[1]).invoke(final).context.startswith("[1]")
    with pytest.raises(InvalidInputError):
        StageRunnable(stages[1]).invoke(RAGStateChunk(answer_delta="x"))
    assert chain.get_input_jsonschema()["anyOf"][0] == {"type": "string"}
    assert chain.get_output_jsonschema() is not None
    with pytest.raises(InvalidInputError):
        StageRunnable(object())  # type: ignore[arg-type]


async def test_routed_rag_as_a_runnable_composes_with_pipes(stages: list[StageRouter]) -> None:
    rag = RoutedRAG(retrieval_strategy=stages[0], prompt=stages[2], generator=stages[3])
    node = as_runnable(rag)
    assert isinstance(node, PipelineRunnable)
    answer_only = node | RunnableLambda(lambda state: state.answer)
    assert answer_only.invoke(HARD) == "Quito is higher than Lima"
    assert await answer_only.ainvoke(SIMPLE) == "Lima"
    chunks = [c async for c in node.astream(HARD)]
    assert "".join(c.answer_delta for c in chunks) == chunks[-1].state.answer == "Quito is higher than Lima"
    recorder = Recorder()
    node.invoke(SIMPLE, config={"callbacks": [recorder]})
    chat = next(s for s in recorder.starts if s["kind"] == "chat")
    assert chat["parent"] == recorder.named("RoutedRAG")["run_id"]  # models inside the pipeline are its children


def test_as_runnable_dispatch() -> None:
    lam = RunnableLambda(lambda x: x)
    assert as_runnable(lam) is lam
    assert isinstance(as_runnable(StageRouter({"a": lambda s: s})), StageRunnable)
    with pytest.raises(InvalidInputError):
        as_runnable(42)


async def test_a_router_that_calls_a_langchain_model_does_so_in_a_routing_child_run() -> None:
    class ModelRouter:
        """An LLM-as-router stand-in: asks a chat model which option to take."""

        name, is_fitted, candidates_ = "llm-router", True, ["a", "b"]

        def __init__(self) -> None:
            self.model = GenericFakeChatModel(messages=itertools.cycle([AIMessage("b")]))

        def route_one(self, query: str, lam: Any = None, budget: Any = None) -> Any:
            from rag_routing.decision import decide

            pick = str(self.model.invoke(query).content)
            return decide([[float(pick == "a"), float(pick == "b")]], [[0.0, 0.0]], ["a", "b"], router=self.name)[0]

    stage = StageRouter({"a": lambda s: s.evolve(answer="A"), "b": lambda s: s.evolve(answer="B")},
                        router=ModelRouter(), name="pick")
    for call in ("invoke", "ainvoke"):
        recorder = Recorder()
        result = getattr(StageRunnable(stage), call)("q", config={"callbacks": [recorder]})
        out = await result if call == "ainvoke" else result
        chat = next(s for s in recorder.starts if s["kind"] == "chat")
        assert out.answer == "B" and chat["parent"] == recorder.named("pick")["run_id"] and "routing" in chat["tags"]


async def test_self_route_escalation_runs_inside_the_context_option_run() -> None:
    from rag_routing.retrieval import Document, ScoredDocument
    from rag_routing.stages.pipeline import AnswerChain

    chat = GenericFakeChatModel(messages=itertools.cycle([AIMessage("unanswerable"), AIMessage("Lima")]))
    answerer = AnswerChain(PromptStrategyRouter(), GeneratorRouter({"m": ChatModelLLM(chat, model_name="gpt-4o")}))
    hit = ScoredDocument(Document("d1#0", "Peru is in South America.", "Peru", {"parent_id": "d1"}), 1.0, 1, "bm25")
    stage = ContextRouter(parents={"d1": "Peru is in South America. Lima is its capital."}).with_answerer(answerer)
    node = StageRunnable(stage)
    for call in ("invoke", "ainvoke"):
        recorder = Recorder()
        result = getattr(node, call)(RAGState(query="Capital of Peru?", documents=[hit]),
                                     config={"callbacks": [recorder]})
        out = await result if call == "ainvoke" else result
        assert out.answer == "Lima" and out.choices()["context"] == "chunks->full"
        option = recorder.named("context:chunks")
        chats = [s for s in recorder.starts if s["kind"] == "chat"]
        assert len(chats) == 2 and all(c["metadata"]["rag_stage"] == "context" for c in chats)
        assert option["parent"] == recorder.named("context")["run_id"]
    empty = node.invoke(RAGState(query="Capital of Peru?"))  # no documents: the stage's own "none" path
    assert empty.choices()["context"] == "none"
