"""`ChatModelLLM`: a LangChain chat model as an LLM of the generator stage (``GeneratorRouter``).

The generator stage's options call ``llm.generate(messages, max_new_tokens=..., temperature=...)`` with
``{"role", "content"}`` messages. ``ChatModelLLM`` passes them to any chat model (or chain ending in one:
``AIMessage`` or ``str`` out) with ``invoke`` / ``ainvoke`` **inside the current LangChain config**: under a
:class:`~rag_routing.integrations.langchain.runnables.StageRunnable` the call is a child run of the stage's
option run (tags, metadata, callbacks inherited; its tokens stream through ``StageRunnable.stream``).

Each call is priced into the ambient ledger by a
:class:`~rag_routing.integrations.langchain.callbacks.LedgerCallbackHandler` (unless one is already attached
upstream, or the model records itself, like ``LocalChatModel``).

Example:
    >>> from langchain_core.language_models import FakeListChatModel
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.ledger import ledger_scope
    >>> from rag_routing.stages import GeneratorRouter
    >>> llm = ChatModelLLM(FakeListChatModel(responses=["Lima"]), model_name="fake-small",
    ...                    pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0))
    >>> with ledger_scope() as ledger:
    ...     answer = GeneratorRouter({"small": llm}).invoke("Capital of Peru?").answer
    >>> answer, ledger.entries[-1].model, ledger.entries[-1].estimated
    ('Lima', 'fake-small', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.integrations.langchain.callbacks import LedgerCallbackHandler


@dataclass(frozen=True)
class ChatModelReply:
    """What :meth:`ChatModelLLM.generate` returns: the answer text and the model's message (or ``None``)."""

    text: str
    message: Any = None


def _model_name(model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(getattr(model, "name", None) or type(model).__name__)


def _has_ledger_handler(callbacks: Any) -> bool:
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else (callbacks or [])
    return any(isinstance(h, LedgerCallbackHandler) and not h.ambient for h in handlers)


class ChatModelLLM:
    """A LangChain chat model behind the ``generate(messages, ...)`` interface of the generator stage.

    Args:
        model: a chat model or any Runnable from messages to an ``AIMessage`` or a ``str``.
        model_name: the name in traces and the ledger; when given, calls are billed as this model whatever the
            response reports (default: the model's ``model_name`` / ``model`` attribute).
        pricing: the model's price when the price table does not know it.
        allow_unpriced: record an unknown model at an explicit $0 instead of raising ``UnknownPriceError``.
        max_tokens_param: keyword under which the stage's answer budget is passed to ``invoke`` (e.g.
            ``"max_tokens"``); ``None`` (default) leaves the model's own setting.
        record: price calls into the ambient ledger (set ``False`` if something else records them).
    """

    def __init__(self, model: Runnable, *, model_name: str | None = None, pricing: Pricing | None = None,
                 allow_unpriced: bool = False, max_tokens_param: str | None = None, record: bool = True):
        if not isinstance(model, Runnable):
            raise InvalidInputError(f"ChatModelLLM wraps a LangChain Runnable (a chat model), got "
                                    f"{type(model).__name__}")
        if pricing is not None and not isinstance(pricing, Pricing):
            raise InvalidInputError(f"pricing must be a Pricing, got {type(pricing).__name__}")
        self.model = model
        self.model_name = model_name or _model_name(model)
        self.pricing = pricing
        self.allow_unpriced = allow_unpriced
        self.max_tokens_param = max_tokens_param
        self.record = record
        self._forced_name = model_name

    def config(self) -> RunnableConfig:
        """The current LangChain config (inherited from the enclosing run) plus the ledger handler."""
        config = ensure_config()
        callbacks = config.get("callbacks")
        if not self.record or _has_ledger_handler(callbacks):
            return config
        handler = LedgerCallbackHandler(pricing={self.model_name: self.pricing} if self.pricing else None,
                                        allow_unpriced=self.allow_unpriced, default_model=self.model_name,
                                        model=self._forced_name)
        if isinstance(callbacks, BaseCallbackManager):
            manager = callbacks.copy()
            manager.add_handler(handler, inherit=True)
            config["callbacks"] = manager
        else:
            config["callbacks"] = [*(callbacks or []), handler]
        return config

    def _kwargs(self, max_new_tokens: int | None) -> dict[str, Any]:
        if self.max_tokens_param and max_new_tokens:
            return {self.max_tokens_param: int(max_new_tokens)}
        return {}

    def generate(self, messages: Sequence[dict[str, str]] | str, max_new_tokens: int | None = None,
                 temperature: float | None = None, **kwargs: Any) -> ChatModelReply:
        """Invoke the chat model on ``messages`` (``{"role", "content"}`` dicts or a string)."""
        return _reply(self.model.invoke(_as_input(messages), self.config(), **self._kwargs(max_new_tokens)))

    async def agenerate(self, messages: Sequence[dict[str, str]] | str, max_new_tokens: int | None = None,
                        temperature: float | None = None, **kwargs: Any) -> ChatModelReply:
        """Async :meth:`generate` (``ainvoke``)."""
        return _reply(await self.model.ainvoke(_as_input(messages), self.config(), **self._kwargs(max_new_tokens)))

    def __repr__(self) -> str:
        return f"ChatModelLLM({self.model_name!r})"


def _as_input(messages: Sequence[dict[str, str]] | str) -> Any:
    if isinstance(messages, str):
        return messages
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _reply(output: Any) -> ChatModelReply:
    if isinstance(output, str):
        return ChatModelReply(output)
    text = getattr(output, "text", None)
    if isinstance(text, str):
        return ChatModelReply(str(text), output)
    raise InvalidInputError(f"the chat model returned {type(output).__name__}; expected a message or a str")


__all__ = ["ChatModelLLM", "ChatModelReply"]
