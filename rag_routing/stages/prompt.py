"""Prompt-strategy stage: direct, chain-of-thought or few-shot messages for the generator.

Ning et al. 2024 route between a plain and a more elaborate prompting technique per query, treating it as a
classification task (survey §4.2.3); :class:`PromptStrategyRouter` chooses among named
:class:`PromptBuilder` options with any router, or uses a fixed one.

The prompts (kept short: the default generator is a 135M-parameter model with a small attention span):

* system, every strategy: "You answer questions. Use the context when one is given. Reply with the answer
  only, in a few words." (without a context: "You are a friendly assistant. Reply briefly.") and, when
  the context stage allows it (Self-Route's first pass), "If the context does
  not contain the answer, reply exactly: unanswerable";
* ``direct``: the system message, earlier chat turns, then ``Context:\\n[1] title: text ...\\n\\nQuestion: q``;
* ``cot``: asks for one or two short reasoning sentences, then ``Answer:`` and the answer; the generator keeps
  what follows the last ``Answer:`` (``metadata["answer_prefix"]``) and gets more tokens
  (``metadata["max_new_tokens"]``);
* ``few_shot``: two worked examples (invented facts, written for this package) as earlier user/assistant
  turns, then the question.

Example:
    >>> from rag_routing.stages.state import RAGState
    >>> out = PromptStrategyRouter().invoke(RAGState(query="Who built it?", context="Ada built it."))
    >>> out.prompt_strategy, out.messages[-1]["content"]
    ('direct', 'Context:\\nAda built it.\\n\\nQuestion: Who built it?')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.stages.base import Option, StageRouter
from rag_routing.stages.state import RAGState

SYSTEM_PROMPT = "You answer questions. Use the context when one is given. Reply with the answer only, in a few words."
#: System message when there is no context (no retrieval: chit-chat or a question from memory).
CHAT_SYSTEM_PROMPT = "You are a friendly assistant. Reply briefly."
UNANSWERABLE_INSTRUCTION = "If the context does not contain the answer, reply exactly: unanswerable"
COT_INSTRUCTION = ("Think step by step in one or two short sentences, then write 'Answer:' followed by the answer "
                   "in a few words.")
ANSWER_PREFIX = "Answer:"

#: Worked examples of the few-shot strategy (invented facts, so they cannot leak an answer).
FEW_SHOT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("The Velmar Tower was completed in 1908 by the architect Ines Carrow.",
     "Who designed the Velmar Tower?", "Ines Carrow"),
    ("Ines Carrow was born in the port city of Ostrelle.",
     "In which city was the architect of the Velmar Tower born?", "Ostrelle"),
)


def user_message(query: str, context: str) -> str:
    """``Context:\\n<context>\\n\\nQuestion: <query>``, or the bare query when there is no context."""
    return f"Context:\n{context}\n\nQuestion: {query}" if context.strip() else query


def system_message(allow_unanswerable: bool, extra: str = "", has_context: bool = True) -> str:
    parts = [SYSTEM_PROMPT if has_context else CHAT_SYSTEM_PROMPT]
    if extra:
        parts.append(extra)
    if allow_unanswerable:
        parts.append(UNANSWERABLE_INSTRUCTION)
    return " ".join(parts)


@dataclass(frozen=True)
class PromptBuilder:
    """A prompt strategy as a stage option: builds ``state.messages`` from the query, context and history.

    Args:
        name: the strategy's name (``state.prompt_strategy``).
        instruction: added to the system message.
        examples: (context, question, answer) demonstrations inserted as earlier turns.
        max_new_tokens: answer budget the generator should use (``None``: the generator's default).
        answer_prefix: the generator keeps the text after the last occurrence of this marker.
    """

    name: str
    instruction: str = ""
    examples: Sequence[tuple[str, str, str]] = field(default_factory=tuple)
    max_new_tokens: int | None = None
    answer_prefix: str | None = None

    def messages(self, state: RAGState) -> list[dict[str, str]]:
        """The chat messages for ``state``."""
        allow = bool(state.metadata.get("allow_unanswerable", False))
        out = [{"role": "system", "content": system_message(allow, self.instruction, bool(state.context.strip()))}]
        for context, question, answer in self.examples:
            out.append({"role": "user", "content": user_message(question, context)})
            reply = f"{ANSWER_PREFIX} {answer}" if self.answer_prefix else answer
            out.append({"role": "assistant", "content": reply})
        out.extend(dict(m) for m in state.history)
        out.append({"role": "user", "content": user_message(state.query, state.context)})
        return out

    def invoke(self, state: RAGState) -> RAGState:
        metadata = dict(state.metadata)
        metadata.pop("max_new_tokens", None)
        metadata.pop("answer_prefix", None)
        if self.max_new_tokens is not None:
            metadata["max_new_tokens"] = self.max_new_tokens
        if self.answer_prefix is not None:
            metadata["answer_prefix"] = self.answer_prefix
        return state.evolve(messages=self.messages(state), prompt_strategy=self.name, metadata=metadata)

    __call__ = invoke


DIRECT = PromptBuilder("direct")
CHAIN_OF_THOUGHT = PromptBuilder("cot", instruction=COT_INSTRUCTION, max_new_tokens=64, answer_prefix=ANSWER_PREFIX)
FEW_SHOT = PromptBuilder("few_shot", examples=FEW_SHOT_EXAMPLES)


def default_prompt_options() -> dict[str, PromptBuilder]:
    """``{"direct", "cot", "few_shot"}`` builders."""
    return {"direct": DIRECT, "cot": CHAIN_OF_THOUGHT, "few_shot": FEW_SHOT}


def extract_answer(text: str, answer_prefix: str | None) -> str:
    """The answer part of a generation: after the last ``answer_prefix`` when present, stripped."""
    if answer_prefix and answer_prefix.lower() in text.lower():
        cut = text.lower().rfind(answer_prefix.lower())
        text = text[cut + len(answer_prefix):]
    return text.strip()


class PromptStrategyRouter(StageRouter):
    """Chooses the prompt strategy (direct / chain-of-thought / few-shot) per query.

    Args:
        options: ``{name: PromptBuilder or option}`` (default: :func:`default_prompt_options`).
        router, default, lam, budget, name: see :class:`~rag_routing.stages.base.StageRouter`
            (default option: ``"direct"``).
    """

    stage = "prompt"

    def __init__(self, options: Mapping[str, Option] | None = None, *, router: Any = None,
                 default: str | None = None, lam: float | None = None, budget: float | None = None,
                 name: str | None = None):
        options = dict(options) if options is not None else default_prompt_options()
        if default is None and "direct" in options:
            default = "direct"
        super().__init__(options, router=router, default=default, lam=lam, budget=budget, name=name)

    @staticmethod
    def builder(name: str, **kwargs: Any) -> PromptBuilder:
        """A :class:`PromptBuilder` called ``name`` (a shortcut for custom strategies)."""
        if not name:
            raise InvalidInputError("a prompt strategy needs a name")
        return PromptBuilder(name, **kwargs)


__all__ = ["PromptStrategyRouter", "PromptBuilder", "DIRECT", "CHAIN_OF_THOUGHT", "FEW_SHOT",
           "default_prompt_options", "extract_answer", "user_message", "system_message", "SYSTEM_PROMPT",
           "UNANSWERABLE_INSTRUCTION", "ANSWER_PREFIX"]
