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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, field_validator, model_validator

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
    model_config = ConfigDict(extra="forbid")  # an unknown part field is refused, never dropped

    type: Literal["text"]
    text: str

    _check = field_validator("text")(classmethod(lambda cls, v: _unicode(v)))


class ChatMessage(BaseModel):
    """One message. Tool calls, participant names and other message fields are refused (400), not dropped;
    ``tool_calls: []`` and ``refusal: null`` ask for nothing and are accepted."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str | list[TextPart] | None = None
    tool_calls: list[Any] | None = Field(default=None, max_length=0)
    refusal: None = None

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
    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False


Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Penalty = Annotated[float, Strict(), Field(ge=-2.0, le=2.0, allow_inf_nan=False)]

#: Options handed to the generator (when given): the candidate must take them, else the request is a 400.
GENERATION_OPTIONS = ("max_tokens", "temperature", "stop", "seed", "top_p", "presence_penalty", "frequency_penalty",
                      "logprobs", "top_logprobs")
#: Values of a generation option that change nothing, accepted even by a generator without that option.
NEUTRAL_OPTIONS: dict[str, tuple[Any, ...]] = {"top_p": (1, 1.0), "presence_penalty": (0, 0.0),
                                               "frequency_penalty": (0, 0.0), "logprobs": (False,)}
#: OpenAI fields this server does not implement, with the values that ask for nothing (accepted as such).
UNSUPPORTED_FIELDS: dict[str, tuple[Any, ...]] = {
    "tools": (None, []), "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, True, False), "functions": (None, []), "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}), "logit_bias": (None, {}), "store": (None, False),
    "metadata": (None, {}), "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,),
    "service_tier": (None, "auto", "default"), "reasoning_effort": (None,), "web_search_options": (None,),
    "verbosity": (None,), "prompt_cache_key": (None,), "safety_identifier": (None,),
}


class UnsupportedFieldError(InvalidInputError):
    """A request field this server does not implement (or does not know), named in ``param``."""

    def __init__(self, message: str, param: str, code: str):
        super().__init__(message)
        self.param, self.code = param, code


def check_fields(data: Any) -> None:
    """Refuse unknown fields and OpenAI fields this server does not implement (unless at a neutral value).

    Never ignored silently: a client asking for tools or log-probabilities gets a 400 naming the field.
    """
    if not isinstance(data, dict):
        return
    if data.get("top_logprobs") is not None and data.get("logprobs") is not True:
        raise UnsupportedFieldError("top_logprobs needs logprobs: true", "top_logprobs", "invalid_value")
    for name, value in data.items():
        if name in ChatCompletionRequest.model_fields:
            continue
        if name in UNSUPPORTED_FIELDS:
            if any(value == neutral and type(value) is type(neutral) for neutral in UNSUPPORTED_FIELDS[name]):
                continue
            raise UnsupportedFieldError(f"{name!r} is not supported by this server (got {_short(value)}); "
                                        "remove it from the request", name, "unsupported_parameter")
        raise UnsupportedFieldError(f"Unrecognized request argument supplied: {_short(name, 64)}", str(name)[:64],
                                    "unknown_parameter")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body. ``model`` is ``"auto"``/``"router"`` (route) or a candidate name.

    Types are strict (``max_tokens: "10"`` is refused, not coerced); fields outside this model go through
    :func:`check_fields` first.
    """

    model_config = ConfigDict(extra="ignore")

    model: StrictStr = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    temperature: Annotated[float, Strict()] | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = Field(default=None, ge=0)
    n: StrictInt = Field(default=1, ge=1, le=1)
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    user: StrictStr | None = Field(default=None, max_length=256)

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

    def generation_options(self, default_max_tokens: int) -> tuple[dict[str, Any], set[str]]:
        """(options for the generator, the names the client set explicitly)."""
        explicit = {n for n in GENERATION_OPTIONS if getattr(self, n, None) is not None}
        if self.max_completion_tokens is not None:
            explicit.add("max_tokens")
        options = {n: getattr(self, n) for n in GENERATION_OPTIONS if n != "max_tokens"}
        options["max_tokens"] = self.output_limit(default_max_tokens)
        if not self.logprobs:  # OpenAI: top_logprobs needs logprobs; without it nothing is computed
            options["logprobs"], options["top_logprobs"] = None, None
            explicit -= {"logprobs", "top_logprobs"}
        elif self.top_logprobs is None:
            options["top_logprobs"] = 0
        return options, explicit


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback`` body: a routed decision's id and either ``reward`` or ``quality`` (and ``cost``)."""

    model_config = ConfigDict(extra="forbid")

    decision_id: StrictStr = Field(min_length=1, max_length=128)
    reward: Annotated[float, Strict()] | None = Field(default=None, ge=-1e6, le=1e6, allow_inf_nan=False)
    quality: Annotated[float, Strict()] | None = Field(default=None, ge=-1e6, le=1e6, allow_inf_nan=False)
    cost: Annotated[float, Strict()] | None = Field(default=None, ge=0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_signal(self) -> FeedbackRequest:
        if (self.reward is None) == (self.quality is None):
            raise ValueError("give either reward or quality (with an optional cost)")
        if self.cost is not None and self.quality is None:
            raise ValueError("cost goes with quality")
        return self


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def completion_body(completion_id: str, model: str, text: str, finish_reason: str, usage: dict[str, int],
                    routing: dict[str, Any], logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                     "finish_reason": finish_reason}],
        "usage": usage, "x_rag_routing": routing,
    }


def chunk_body(completion_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None,
               logprobs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}], **extra}


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


__all__ = ["ChatCompletionRequest", "ChatMessage", "FeedbackRequest", "check_fields", "UnsupportedFieldError",
           "GENERATION_OPTIONS", "NEUTRAL_OPTIONS", "UNSUPPORTED_FIELDS", "ROUTE_ALIASES", "error_body", "completion_body", "chunk_body",
           "usage_body"]
