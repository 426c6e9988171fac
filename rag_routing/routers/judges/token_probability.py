"""Judges that read the answering model's own token probabilities: free when the reply carries them.

* :class:`TokenMarginJudge` — Ramírez et al. (2024), "Optimising Calls to Large Language Models with
  Uncertainty-Based Two-Tier Selection": the margin between the top-1 and top-2 token probabilities at the first
  position of the answer. Estimates how decided the model was; a small margin sends the query up the cascade.
* :class:`SequenceProbabilityJudge` — C.-H. Lee et al. (2024): the length-normalised probability of the whole
  answer, ``exp(mean token log-probability)``. Estimates the model's confidence in the sequence it produced.

Both read log-probabilities from ``generation=`` (a ``Generation`` from :class:`~rag_routing.llms.LocalLLM`,
a LangChain message whose ``response_metadata["logprobs"]`` is in OpenAI's shape — ``ChatOpenAI(...).bind(
logprobs=True, top_logprobs=5)`` or our ``LocalChatModel`` — or a
:class:`~rag_routing.routers.judges.llm_client.Completion`): no new call, nothing recorded. Without a
generation, a judge built with ``llm=`` *probes*: it asks that model for the bare answer (one short call,
recorded under ``stage="judge"``) and scores that reply.

Small instruct models rarely start with the answer: SmolLM2-135M answers "The capital of France is Paris", so
its first token is "The". ``TokenMarginJudge(position="answer")`` (the default) skips such leading filler
tokens, or scores the token where ``answer_pattern`` (a regex) first matches, e.g. ``r"\\b[A-D]\\b"`` for
multiple choice; ``position="first"`` is Ramírez et al.'s literal first token. Probing asks for the bare answer.

Example:
    >>> from rag_routing.routers.judges.llm_client import Completion
    >>> reply = Completion("The answer is B", tokens=("The", " answer", " is", " B"),
    ...                    token_logprobs=(-0.1, -0.1, -0.1, -0.36),
    ...                    top_logprobs=((("The", -0.1),), ((" answer", -0.1),), ((" is", -0.1),),
    ...                                  ((" B", -0.36), (" C", -1.61), ("B", -2.3))))
    >>> round(TokenMarginJudge().score("Which?", "B", generation=reply), 2)   # (0.70 + 0.10) - 0.20
    0.6
    >>> round(SequenceProbabilityJudge().score("Which?", "B", generation=reply), 3)   # exp(-0.66 / 4)
    0.848
"""

from __future__ import annotations

import math
import re
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.routers.judges.base import Judge, JudgeInput
from rag_routing.routers.judges.llm_client import Completion, LLMClient, as_completion
from rag_routing.validation import check_choice

#: Leading tokens that phrase an answer rather than give it (compared lower-cased, stripped).
FILLER_TOKENS = frozenset({
    "", "the", "a", "an", "answer", "answers", "final", "correct", "is", "are", "it", "its", "it's", "i", "think",
    "believe", "option", "choice", "would", "be", "my", "here", "sure", "well", "so", "yes,", ":", "-", "*", "**",
    "(", ")", ".", ",", "\"", "'", "`", "=",
})

PROBE_SYSTEM = ("Answer with only the answer itself: a single word, number, name or option letter. "
                "No explanation, no full sentence.")


class _LogProbabilityJudge(Judge):
    def __init__(self, *, llm: Any = None, threshold: float = 0.5, probe_max_tokens: int = 8,
                 probe_system: str = PROBE_SYSTEM, **client_options: Any):
        super().__init__(threshold=threshold)
        self.client = None if llm is None else LLMClient(llm, stage="judge", component=self.name, **client_options)
        self.probe_max_tokens = probe_max_tokens
        self.probe_system = probe_system

    def _probe_messages(self, item: JudgeInput) -> list[dict[str, str]]:
        system = self.probe_system if item.context is None else f"{self.probe_system}\n\nContext:\n{item.context}"
        return [{"role": "system", "content": system}, {"role": "user", "content": item.query}]

    def _given(self, item: JudgeInput) -> Completion | None:
        if item.generation is None:
            if self.client is None:
                raise InvalidInputError(f"{type(self).__name__} needs generation= (the reply that produced the "
                                        "answer, with log-probabilities) or an llm= to probe")
            return None
        reply = as_completion(item.generation)
        if not reply.has_logprobs:
            raise InvalidInputError("the generation carries no log-probabilities; ask for them (LocalLLM: "
                                    "logprobs=True; ChatOpenAI: .bind(logprobs=True, top_logprobs=5))")
        return reply

    def _score(self, item: JudgeInput) -> float:
        reply = self._given(item)
        if reply is None:
            assert self.client is not None
            reply = self.client.complete(self._probe_messages(item), max_tokens=self.probe_max_tokens,
                                         temperature=0.0, logprobs=True, top_logprobs=5)
        return self._from_logprobs(reply)

    async def _ascore(self, item: JudgeInput) -> float:
        reply = self._given(item)
        if reply is None:
            assert self.client is not None
            reply = await self.client.acomplete(self._probe_messages(item), max_tokens=self.probe_max_tokens,
                                                temperature=0.0, logprobs=True, top_logprobs=5)
        return self._from_logprobs(reply)

    def _from_logprobs(self, reply: Completion) -> float:
        raise NotImplementedError


class TokenMarginJudge(_LogProbabilityJudge):
    """Top-1 minus top-2 probability of the answer's first token (Ramírez et al. 2024).

    Args:
        position: ``"answer"`` (skip leading filler tokens such as "The", "Answer", ":"; default) or
            ``"first"`` (the first generated token, as in the paper).
        answer_pattern: a regex; the token where it first matches in the reply is scored (overrides
            ``position``); falls back to ``position`` when it does not match.
        llm: a model to probe when no ``generation`` is given (see module docstring).
        threshold: accept at or above this margin.

    Alternatives that differ only in case or surrounding spaces (" B" and "B") are merged before the margin
    is taken. Without top alternatives the margin's lower bound ``max(0, 2p - 1)`` is used.
    """

    name = "token_margin"

    def __init__(self, *, position: str = "answer", answer_pattern: str | None = None, llm: Any = None,
                 threshold: float = 0.5, **options: Any):
        check_choice("position", position, ("answer", "first"))
        super().__init__(llm=llm, threshold=threshold, **options)
        self.position = position
        self.answer_pattern = None if answer_pattern is None else re.compile(answer_pattern)

    def answer_token(self, reply: Completion) -> int:
        """Index of the token that is scored."""
        if self.answer_pattern is not None:
            match = self.answer_pattern.search("".join(reply.tokens))
            if match is not None:
                for i, (_, end) in enumerate(reply.token_spans()):
                    if end > match.start():
                        return i
        if self.position == "first":
            return 0
        for i, token in enumerate(reply.tokens):
            if token.strip().lower() not in FILLER_TOKENS:
                return i
        return 0

    def _from_logprobs(self, reply: Completion) -> float:
        i = self.answer_token(reply)
        if reply.top_logprobs and reply.top_logprobs[i]:
            merged: dict[str, float] = {}
            for token, logprob in reply.top_logprobs[i]:
                key = token.strip().lower()
                merged[key] = merged.get(key, 0.0) + math.exp(logprob)
            probs = sorted(merged.values(), reverse=True) + [0.0]
            return max(0.0, min(1.0, probs[0] - probs[1]))
        return max(0.0, 2.0 * math.exp(reply.token_logprobs[i]) - 1.0)


class SequenceProbabilityJudge(_LogProbabilityJudge):
    """Length-normalised sequence probability ``exp(mean log p(token))`` (C.-H. Lee et al. 2024).

    Args:
        llm: a model to probe when no ``generation`` is given.
        threshold: accept at or above this probability.
    """

    name = "sequence_probability"

    def _from_logprobs(self, reply: Completion) -> float:
        return math.exp(sum(reply.token_logprobs) / len(reply.token_logprobs))


__all__ = ["TokenMarginJudge", "SequenceProbabilityJudge", "FILLER_TOKENS", "PROBE_SYSTEM"]
