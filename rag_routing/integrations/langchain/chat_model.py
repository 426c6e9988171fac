"""LangChain chat model for the offline default generator (:class:`~rag_routing.llms.local.LocalLLM`).

:class:`LocalChatModel` is a ``BaseChatModel``: ``invoke`` / ``ainvoke`` / ``stream`` / ``astream`` / ``batch``
and LCEL chains work as with any provider. Its ``AIMessage`` carries ``usage_metadata`` and, in
``response_metadata["logprobs"]``, token log-probabilities in OpenAI's shape (as ``ChatOpenAI(...).bind(
logprobs=True)`` returns them), so a judge that reads logprobs from OpenAI through LangChain reads ours
unchanged; streamed chunks carry their own tokens' logprobs, which add up like ChatOpenAI's.

Per-call options (``invoke(..., **kw)`` or ``.bind(**kw)``): ``max_tokens``, ``temperature``, ``seed``,
``logprobs``, ``top_logprobs``, ``stop``.

Example (loads the local model on first use):
    >>> from langchain_core.output_parsers import StrOutputParser
    >>> from langchain_core.prompts import ChatPromptTemplate
    >>> prompt = ChatPromptTemplate.from_messages([("system", "Use this context to answer: {context}"),
    ...                                            ("human", "{question}")])
    >>> chain = prompt | LocalChatModel(max_tokens=16) | StrOutputParser()
    >>> "Zorbatown" in chain.invoke({"context": "The capital of Freedonia is Zorbatown.",
    ...                              "question": "What is the capital of Freedonia?"})
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from rag_routing.errors import InvalidInputError
from rag_routing.llms.generation import Generation, GenerationChunk
from rag_routing.llms.local import LocalLLM

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool", "function": "tool"}
_CALL_OPTIONS = ("max_tokens", "max_new_tokens", "temperature", "seed", "logprobs", "top_logprobs")


class LocalChatModel(BaseChatModel):
    """A local instruct model (SmolLM2-135M-Instruct by default) as a LangChain chat model, with logprobs.

    Args:
        model_path, gguf_file: the model (see :class:`~rag_routing.llms.local.LocalLLM`); default SmolLM2.
        model: the model name reported in metadata and the ledger (alias ``model_name``).
        max_tokens: maximum generated tokens per call.
        temperature: 0 (default) is greedy; above 0 samples, reproducibly when ``seed`` is set.
        logprobs, top_logprobs: return token log-probabilities (and the top-k alternatives) in
            ``response_metadata["logprobs"]``.
        stop: default stop sequences.
        record_to_ledger: record each call in the ambient cost ledger ($0, tokens, seconds, energy); each
            recorded message carries ``response_metadata["ledger_entry_id"]`` so that a callback handler
            can tell the call is already in the ledger.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_path: str | None = None
    gguf_file: str | None = None
    model_name: str | None = Field(default=None, alias="model")
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    device: str = "cpu"
    logprobs: bool = True
    top_logprobs: int = 5
    stop: list[str] | None = None
    record_to_ledger: bool = True

    _llm: LocalLLM = PrivateAttr()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Built here rather than in a validator so that typed errors reach the caller unwrapped.
        self._llm = LocalLLM(self.model_path, gguf_file=self.gguf_file, model_name=self.model_name,
                             max_new_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed,
                             device=self.device, record_to_ledger=self.record_to_ledger)
        self.model_name = self._llm.model_name
        self._settings({})  # validates logprobs / top_logprobs / stop now rather than at the first call

    @property
    def llm(self) -> LocalLLM:
        """The framework-free model behind this chat model."""
        return self._llm

    @property
    def _llm_type(self) -> str:
        return "rag-routing-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "seed": self.seed, "device": self.device,
                "ledger_records_itself": self.record_to_ledger}  # LedgerCallbackHandler: no second entry

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="local", ls_model_name=self.model_name or "", ls_model_type="chat",
                                 ls_temperature=kwargs.get("temperature", self.temperature),
                                 ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # LangChain's default counts with the GPT-2 tokenizer from the hub (0 offline): count with ours.
    def get_token_ids(self, text: str) -> list[int]:
        return list(self._llm.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def get_num_tokens(self, text: str) -> int:
        return self._llm.count_tokens(text)

    # -- generation -----------------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        settings = self._settings(kwargs, stop)
        generation = self._llm.generate(to_chat_messages(messages), **settings)
        metadata = _response_metadata(generation, settings["logprobs"])
        message = AIMessage(content=generation.text, usage_metadata=_usage(generation),
                            response_metadata=metadata)
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason":
                                                                           generation.finish_reason})],
            llm_output={"token_usage": generation.usage, "model_name": generation.model},
        )

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        settings = self._settings(kwargs, stop)
        for piece in self._llm.stream_chunks(to_chat_messages(messages), **settings):
            chunk = _chat_chunk(piece, settings["logprobs"])
            if run_manager is not None:
                run_manager.on_llm_new_token(piece.text, chunk=chunk,
                                             logprobs=chunk.message.response_metadata.get("logprobs"))
            yield chunk

    def _settings(self, kwargs: dict[str, Any], stop: list[str] | None = None) -> dict[str, Any]:
        unknown = [k for k in kwargs if k not in _CALL_OPTIONS and not k.startswith("ls_")]
        if unknown:
            raise InvalidInputError(f"LocalChatModel does not understand {sorted(unknown)}; it accepts "
                                    f"{', '.join(_CALL_OPTIONS)} and stop")
        max_tokens = kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens))
        settings = {
            "max_new_tokens": max_tokens, "temperature": kwargs.get("temperature", self.temperature),
            "seed": kwargs.get("seed", self.seed), "logprobs": kwargs.get("logprobs", self.logprobs),
            "top_logprobs": kwargs.get("top_logprobs", self.top_logprobs),
            "stop": stop if stop is not None else self.stop,
        }
        # Same checks as the call itself, so bad options fail before the model is loaded.
        self._llm.decode_settings(settings["max_new_tokens"], settings["temperature"], settings["stop"],
                            settings["logprobs"], settings["top_logprobs"], settings["seed"])
        return settings


def to_chat_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as ``{"role", "content"}`` dicts for the chat template (text content only)."""
    converted = []
    for message in messages:
        role = getattr(message, "role", None) if message.type == "chat" else _ROLES.get(message.type)
        if not role:
            raise InvalidInputError(f"unsupported message type {message.type!r} for the local chat model")
        converted.append({"role": role, "content": str(message.text)})
    return converted


def _usage(generation: Generation) -> UsageMetadata:
    return UsageMetadata(input_tokens=generation.input_tokens, output_tokens=generation.output_tokens,
                         total_tokens=generation.total_tokens)


def _response_metadata(generation: Generation, with_logprobs: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"model_name": generation.model, "finish_reason": generation.finish_reason,
                                "token_usage": generation.usage}
    if with_logprobs:
        metadata["logprobs"] = generation.to_openai_logprobs()
    if generation.ledger_entry_id is not None:
        metadata["ledger_entry_id"] = generation.ledger_entry_id
    return metadata


def _chat_chunk(piece: GenerationChunk, with_logprobs: bool) -> ChatGenerationChunk:
    """One streamed piece; the last one carries usage, finish reason and model name (as ChatOpenAI's)."""
    metadata: dict[str, Any] = {}
    if with_logprobs:
        metadata["logprobs"] = piece.to_openai_logprobs()  # lists concatenate when chunks are added
    final = piece.final
    if final is None:
        return ChatGenerationChunk(message=AIMessageChunk(content=piece.text, response_metadata=metadata))
    metadata.update({"model_name": final.model, "finish_reason": final.finish_reason})
    if final.ledger_entry_id is not None:
        metadata["ledger_entry_id"] = final.ledger_entry_id
    message = AIMessageChunk(content=piece.text, usage_metadata=_usage(final), response_metadata=metadata,
                             chunk_position="last")
    return ChatGenerationChunk(message=message, generation_info={"finish_reason": final.finish_reason})


__all__ = ["LocalChatModel", "to_chat_messages"]
