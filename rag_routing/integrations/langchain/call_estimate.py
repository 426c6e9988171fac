"""What a LangChain model call is expected to use, read before it runs (for the pre-call budget check).

* input tokens: the actual prompt (chat messages as LangChain's buffer string, or the completion prompts)
  counted with rag_routing's tiktoken counter for that model;
* output tokens: the call's own limit (``max_tokens``, ``max_completion_tokens``, ``max_output_tokens``,
  ``max_new_tokens``, ``num_predict`` in the invocation params, so also ``model.invoke(x, max_tokens=...)``), else
  :data:`DEFAULT_MAX_OUTPUT_TOKENS` (set another default per handler with ``default_max_tokens=``);
* the model name: the invocation params (``model_name`` / ``model`` / ...), else ``ls_model_name`` of the run's
  metadata (every ``BaseChatModel`` with a ``model`` field puts it there).

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> output_tokens({"max_tokens": 64}), output_tokens({}), output_tokens({"num_predict": 8}, default=100)
    (64, 512, 8)
    >>> prompt_text([[HumanMessage("hello there")]])
    'Human: hello there'
    >>> model_name({"model": "gpt-4o-mini", "temperature": 0}, None, {})
    'gpt-4o-mini'
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, get_buffer_string

#: Output tokens reserved for a call that states no limit (the answer is billed at its real size afterwards).
DEFAULT_MAX_OUTPUT_TOKENS = 512

MODEL_KEYS = ("model_name", "model", "model_id", "deployment_name")
_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens", "num_predict",
               "maxTokens")


def first_model(*sources: Mapping[str, Any] | None) -> str | None:
    """The first non-empty model name found under :data:`MODEL_KEYS` in ``sources``."""
    for source in sources:
        if not source:
            continue
        for key in MODEL_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return None


def model_name(invocation_params: Mapping[str, Any] | None, serialized: Mapping[str, Any] | None,
               metadata: Mapping[str, Any]) -> str | None:
    """The model a run will call, as far as its start event tells (``None``: it does not say)."""
    found = first_model(invocation_params, (serialized or {}).get("kwargs"))
    ls_name = metadata.get("ls_model_name")
    return found or (ls_name if isinstance(ls_name, str) and ls_name.strip() else None)


def output_tokens(invocation_params: Mapping[str, Any] | None, default: int = DEFAULT_MAX_OUTPUT_TOKENS) -> int:
    """The call's output-token limit, or ``default`` when it states none (times ``n`` answers, if asked)."""
    params = invocation_params or {}
    limit = default
    for key in _LIMIT_KEYS:
        value = params.get(key)
        if value is not None and _count(value) > 0:
            limit = int(value)
            break
    n = params.get("n")
    if n is not None and _count(n) > 1:
        limit *= int(n)
    return limit


def _count(value: Any) -> int:
    """``value`` if it is an integer (not a bool), else 0 (the numbers.Integral check only off the common path)."""
    if type(value) is int:
        return value
    return value if isinstance(value, numbers.Integral) and not isinstance(value, bool) else 0  # type: ignore[return-value]


def prompt_text(messages: Sequence[Sequence[BaseMessage]] | None = None,
                prompts: Sequence[str] | None = None) -> str:
    """The text of a run's input: chat messages (one buffer string per list) or completion prompts."""
    if messages is not None:
        return "\n".join(get_buffer_string(list(m)) for m in messages)
    return "\n".join(prompts or ())


__all__ = ["DEFAULT_MAX_OUTPUT_TOKENS", "MODEL_KEYS", "first_model", "model_name", "output_tokens", "prompt_text"]
