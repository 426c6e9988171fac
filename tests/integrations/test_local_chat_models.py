"""The local generator behind LangChain (LocalChatModel) and LlamaIndex (LocalLlamaIndexLLM).

Fast tests run the real wrappers and decoding loop on a scripted stand-in model; the tests marked slow run
the real SmolLM2-135M-Instruct (loaded once per process, shared through the model cache).
"""

from __future__ import annotations

import asyncio
import math
import os

import pytest

pytest.importorskip("torch")
lc_messages = pytest.importorskip("langchain_core.messages")
pytest.importorskip("llama_index.core")

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from llama_index.core.base.llms.types import LogProb  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402

from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.integrations.langchain.chat_model import LocalChatModel, to_chat_messages  # noqa: E402
from rag_routing.integrations.llamaindex.llm import LocalLlamaIndexLLM  # noqa: E402
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.llms import ModelLoadError  # noqa: E402
from rag_routing.llms.scripted import scripted_model  # noqa: E402

CONTEXT = "The capital of Freedonia is Zorbatown."
QUESTION = "What is the capital of Freedonia?"
PROMPT = ChatPromptTemplate.from_messages([("system", "Use this context to answer: {context}"),
                                           ("human", "{question}")])


@pytest.fixture(scope="module")
def scripted_path(tmp_path_factory):
    return scripted_model("Zorbatown.", folder=tmp_path_factory.mktemp("scripted"), confidence=0.8)


def _content(message) -> list[dict]:
    return message.response_metadata["logprobs"]["content"]


# -- LangChain, fast --------------------------------------------------------------------------------------------
def test_invoke_gives_usage_and_openai_style_logprobs(scripted_path):
    message = LocalChatModel(model_path=scripted_path).invoke([("human", QUESTION)])
    assert isinstance(message, AIMessage) and message.content == "Zorbatown."
    usage = message.usage_metadata
    assert usage["output_tokens"] == 11 and usage["total_tokens"] == usage["input_tokens"] + 11
    assert message.response_metadata["model_name"] == os.path.basename(scripted_path)
    assert message.response_metadata["finish_reason"] == "stop"
    first = _content(message)[0]
    assert first["token"] == "Z" and first["logprob"] == pytest.approx(math.log(0.8), rel=1e-5)
    assert [t["token"] for t in first["top_logprobs"]][0] == "Z" and len(first["top_logprobs"]) == 5
    assert "".join(c["token"] for c in _content(message)) == message.content


def test_stream_adds_up_to_invoke(scripted_path):
    model = LocalChatModel(model_path=scripted_path)
    whole = model.invoke(QUESTION)
    chunks = list(model.stream(QUESTION))
    assert len(chunks) > 2
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == whole.content
    assert total.usage_metadata == whole.usage_metadata
    assert _content(total) == _content(whole)
    assert total.response_metadata["finish_reason"] == "stop"


def test_bind_options_and_stop(scripted_path):
    model = LocalChatModel(model_path=scripted_path)
    assert "logprobs" not in model.bind(logprobs=False).invoke(QUESTION).response_metadata
    assert len(_content(model.bind(top_logprobs=2).invoke(QUESTION))[0]["top_logprobs"]) == 2
    cut = model.invoke(QUESTION, stop=["bat"])
    assert cut.content == "Zor" and cut.response_metadata["finish_reason"] == "stop"
    assert model.invoke(QUESTION, max_tokens=3).response_metadata["finish_reason"] == "length"
    with pytest.raises(InvalidInputError, match="tools"):
        model.invoke(QUESTION, tools=[])


def test_async_batch_chain_and_ledger(scripted_path):
    model = LocalChatModel(model_path=scripted_path, max_tokens=4)
    chain = PROMPT | model | StrOutputParser()
    with ledger_scope() as ledger:
        first = asyncio.run(model.ainvoke(QUESTION))
        batch = model.batch([QUESTION, QUESTION])
        answer = chain.invoke({"context": CONTEXT, "question": QUESTION})
        streamed = asyncio.run(_astream_text(model))
    assert first.content == answer == streamed == "Zorb" and [m.content for m in batch] == ["Zorb", "Zorb"]
    assert len(ledger.entries) == 5 and {e.cost_usd for e in ledger.entries} == {0.0}
    assert first.response_metadata["ledger_entry_id"] in {e.entry_id for e in ledger.entries}


async def _astream_text(model) -> str:
    return "".join([chunk.content async for chunk in model.astream(QUESTION)])


def test_tokens_counted_with_the_model_tokenizer_offline(scripted_path):
    model = LocalChatModel(model_path=scripted_path)
    assert model.get_num_tokens("Zorbatown") == 9  # the stand-in is character level


def test_message_conversion():
    messages = [SystemMessage("be brief"), HumanMessage("hi"), AIMessage("hello"),
                ToolMessage("42", tool_call_id="1"), lc_messages.ChatMessage(role="critic", content="hm")]
    assert to_chat_messages(messages) == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "tool", "content": "42"},
        {"role": "critic", "content": "hm"}]


def test_construction_errors_are_typed_and_unwrapped():
    with pytest.raises(ModelLoadError):
        LocalChatModel(model_path="/nonexistent/model")
    with pytest.raises(InvalidInputError):
        LocalChatModel(top_logprobs=50)
    with pytest.raises(ModelLoadError):
        LocalLlamaIndexLLM(model_path="/nonexistent/model")


# -- LlamaIndex, fast -------------------------------------------------------------------------------------------
def test_llamaindex_complete_and_stream(scripted_path):
    llm = LocalLlamaIndexLLM(model_path=scripted_path, top_logprobs=3)
    response = llm.complete(QUESTION)
    assert response.text == "Zorbatown."
    assert len(response.logprobs) == len(response.text) and all(len(row) == 3 for row in response.logprobs)
    assert isinstance(response.logprobs[0][0], LogProb) and response.logprobs[0][0].token == "Z"
    extra = response.additional_kwargs
    assert extra["completion_tokens"] == 11 and extra["total_tokens"] == extra["prompt_tokens"] + 11
    assert extra["token_logprobs"][0] == pytest.approx(math.log(0.8), rel=1e-5)
    stream = list(llm.stream_complete(QUESTION))
    assert stream[-1].text == response.text == "".join(r.delta for r in stream)
    assert stream[-1].additional_kwargs["completion_tokens"] == 11
    assert sum((r.logprobs or [] for r in stream), []) == response.logprobs


def test_llamaindex_chat_formatting_and_async(scripted_path):
    llm = LocalLlamaIndexLLM(model_path=scripted_path, max_tokens=4, system_prompt="Be brief.")
    chat = llm.chat([ChatMessage(role="user", content=QUESTION)])
    assert chat.message.role == "assistant" and chat.message.content == "Zorb" and chat.logprobs
    assert "".join(r.delta for r in llm.stream_chat([ChatMessage(role="user", content=QUESTION)])) == "Zorb"
    raw = llm.complete("abc", formatted=True)  # sent as is: 3 characters, no template
    assert raw.additional_kwargs["prompt_tokens"] == 3
    assert llm.metadata.is_chat_model and llm.metadata.num_output == 4

    async def main():
        with ledger_scope() as ledger:
            done = await llm.acomplete(QUESTION)
            pieces = [r.delta async for r in await llm.astream_complete(QUESTION)]
            chat_done = await llm.achat([ChatMessage(role="user", content=QUESTION)])
            chat_pieces = [r.delta async for r in await llm.astream_chat([ChatMessage(role="user", content=QUESTION)])]
        return done, pieces, chat_done, chat_pieces, ledger

    done, pieces, chat_done, chat_pieces, ledger = asyncio.run(main())
    assert done.text == "".join(pieces) == chat_done.message.content == "".join(chat_pieces) == "Zorb"
    assert len(ledger.entries) == 4
    with pytest.raises(InvalidInputError, match="tools"):
        llm.complete(QUESTION, tools=[])


# -- the real model (slow) --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model():
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    model = LocalChatModel(max_tokens=12)
    model.llm.load()
    return model


@pytest.mark.slow
def test_real_chat_model_invoke_stream_async_batch(chat_model):
    question = [("system", f"Use this context to answer: {CONTEXT}"), ("human", QUESTION)]
    with ledger_scope() as ledger:
        message = chat_model.invoke(question)
        total = None
        for chunk in chat_model.stream(question):
            total = chunk if total is None else total + chunk
        again = asyncio.run(chat_model.ainvoke(question))
        batch = chat_model.batch([question, question], max_tokens=4)
    assert "Zorbatown" in message.content
    assert total.content == again.content == message.content
    assert [m.content for m in batch] == [message.content[: len(batch[0].content)]] * 2
    assert message.usage_metadata["output_tokens"] > 0
    content = _content(message)
    assert len(content) > 0 and all(math.isfinite(t["logprob"]) and t["logprob"] <= 0 for t in content)
    assert _content(total) == content
    entries = ledger.entries
    assert len(entries) == 5 and all(e.cost_usd == 0.0 and e.model == "SmolLM2-135M-Instruct" for e in entries)
    assert entries[0].output_tokens == message.usage_metadata["output_tokens"]


@pytest.mark.slow
def test_real_chat_model_in_an_lcel_chain(chat_model):
    chain = PROMPT | chat_model | StrOutputParser()
    assert "Zorbatown" in chain.invoke({"context": CONTEXT, "question": QUESTION})


@pytest.mark.slow
def test_real_llamaindex_llm(chat_model):
    llm = LocalLlamaIndexLLM(max_tokens=12)  # the same weights: the model cache is shared
    prompt = f"{CONTEXT}\n{QUESTION}"
    response = llm.complete(prompt)
    assert "Zorbatown" in response.text and response.logprobs and response.additional_kwargs["completion_tokens"] > 0
    assert "".join(r.delta for r in llm.stream_complete(prompt)) == response.text
    chat = llm.chat([ChatMessage(role="system", content=f"Use this context to answer: {CONTEXT}"),
                     ChatMessage(role="user", content=QUESTION)])
    assert "Zorbatown" in chat.message.content


@pytest.mark.slow
@pytest.mark.parametrize("module", ["rag_routing.integrations.langchain.chat_model",
                                    "rag_routing.integrations.llamaindex.llm"])
def test_real_docstring_examples_run(chat_model, module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
