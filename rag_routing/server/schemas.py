"""OpenAI chat-completions request and response shapes (the subset a router in front of generators needs).

Requests are validated with pydantic; unknown OpenAI fields are accepted and ignored so that any OpenAI
client works. Message content is a string or a list of ``{"type": "text", "text": ...}`` parts (other part
types are refused: this server routes text). Responses are plain dicts in OpenAI's shapes plus one extension
field, ``x_rag_routing``: which candidate answered, why, the decision id and the cost.

Example:
    >>> req = ChatCompletionRequest.model_validate({"model": "auto", "messages": [
    ...     {"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    >>> req.routing_query(), req.wants_routing(), req.generation_messages()[1]
    ('Hi', True, {'role': 'user', 'content': 'Hi'})
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag_routing.errors import InvalidInputError

ROUTE_ALIASES = ("auto", "router")
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode (a lone surrogate at {exc.start}); send UTF-8 text") from None
    return text


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str

    _check = field_validator("text")(classmethod(lambda cls, v: _unicode(v)))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[TextPart] | None = None

    @field_validator("content")
    @classmethod
    def _check(cls, value: str | list[TextPart] | None) -> str | list[TextPart] | None:
        return _unicode(value) if isinstance(value, str) else value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body. ``model`` is ``"auto"``/``"router"`` (route) or a candidate name."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0)
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = Field(default=None, max_length=256)

    @field_validator("model", "user")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _unicode(value)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [_unicode(s) for s in ([value] if isinstance(value, str) else value)]
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop must be up to 4 non-empty strings")
        return stops

    def wants_routing(self) -> bool:
        return self.model in ROUTE_ALIASES

    def routing_query(self) -> str:
        """The text the router sees: the last user message."""
        for message in reversed(self.messages):
            if message.role == "user" and message.text().strip():
                return message.text()
        raise InvalidInputError("no user message with text to route; send at least one non-empty user message")

    def generation_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role if m.role != "developer" else "system", "content": m.text()}
                for m in self.messages if m.content is not None]

    def output_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def completion_body(completion_id: str, model: str, text: str, finish_reason: str, usage: dict[str, int],
                    routing: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": usage, "x_rag_routing": routing,
    }


def chunk_body(completion_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], **extra}


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


__all__ = ["ChatCompletionRequest", "ChatMessage", "ROUTE_ALIASES", "error_body", "completion_body", "chunk_body",
           "usage_body"]
