"""`ConsistencyJudge`: ask again at a temperature and measure how often the answers agree.

M. Yue et al. (2024), "Large Language Model Cascades with Mixture of Thought Representations for Cost-Efficient
Reasoning": a weak model that answers a question the same way across samples (and across thought
representations, e.g. chain-of-thought and program-of-thought prompts) is usually right; disagreement sends the
question to the strong model. Estimates P(correct) by the agreement rate of ``k`` repeated calls with the
answer under judgement; costs ``k`` calls, each recorded in the ledger under ``stage="judge"``.

Answers are compared by key: normalised text (``mode="text"``), the option letter (``mode="choice"``), or the
first group of ``answer_pattern`` (a regex) when it matches. ``variants`` are system prompts cycled through the
samples (Yue et al.'s mixture of thought representations); the default is one "answer briefly" prompt.

Example:
    >>> from rag_routing.candidates import Pricing
    >>> replies = iter(["Paris.", "paris", "Lyon", "The Paris"])
    >>> judge = ConsistencyJudge(lambda prompt: next(replies), k=4, model="small",
    ...                          pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0))
    >>> judge.score("Capital of France?", "Paris")
    0.75
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.routers.judges.answer_text import answer_key
from rag_routing.routers.judges.base import Judge, JudgeInput
from rag_routing.routers.judges.llm_client import LLMClient

DEFAULT_VARIANTS = ("Answer the question briefly: give only the final answer.",)


class ConsistencyJudge(Judge):
    """Agreement rate of ``k`` sampled answers with the judged answer (Yue et al. 2024; repeated calls).

    Args:
        llm: the model to re-ask (usually the one that answered).
        k: samples per answer.
        temperature: sampling temperature.
        mode: ``"text"`` or ``"choice"`` (see module docstring).
        answer_pattern: regex whose first group (or whole match) is the comparison key, tried first.
        variants: system prompts cycled through the samples.
        reference: ``"answer"`` (agreement with the judged answer) or ``"majority"`` (share of the most common
            key among the samples and the answer: self-consistency without trusting the answer).
        seed: base seed (sample ``i`` uses ``seed + i``); ``None`` draws fresh samples.
        max_tokens: length cap per sample.
        threshold: accept at or above this agreement.
    """

    name = "consistency"

    def __init__(self, llm: Any, *, k: int = 5, temperature: float = 0.8, mode: str = "text",
                 answer_pattern: str | None = None, variants: Sequence[str] = DEFAULT_VARIANTS,
                 reference: str = "answer", seed: int | None = None, max_tokens: int = 32, threshold: float = 0.5,
                 **client_options: Any):
        super().__init__(threshold=threshold)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
        if mode not in ("text", "choice") or reference not in ("answer", "majority") or not variants:
            raise InvalidInputError("mode must be 'text' or 'choice', reference 'answer' or 'majority', and "
                                    "variants a non-empty list of system prompts")
        self.client = LLMClient(llm, stage="judge", component=self.name, **client_options)
        self.k, self.temperature, self.mode, self.reference = k, temperature, mode, reference
        self.answer_pattern = None if answer_pattern is None else re.compile(answer_pattern)
        self.variants, self.seed, self.max_tokens = tuple(variants), seed, max_tokens
        self.last_samples_: list[str] = []

    def key(self, text: str) -> str:
        """The comparison key of an answer."""
        if self.answer_pattern is not None:
            match = self.answer_pattern.search(text)
            if match is not None:
                return (match.group(1) if match.groups() else match.group(0)).strip().lower()
        return answer_key(text, self.mode)

    def _messages(self, item: JudgeInput, i: int) -> list[dict[str, str]]:
        system = self.variants[i % len(self.variants)]
        if item.context is not None:
            system = f"{system}\n\nContext:\n{item.context}"
        return [{"role": "system", "content": system}, {"role": "user", "content": item.query}]

    def _options(self, i: int) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature,
                "seed": None if self.seed is None else self.seed + i}

    def _agreement(self, item: JudgeInput, samples: list[str]) -> float:
        self.last_samples_ = samples
        keys = [self.key(s) for s in samples]
        if self.reference == "majority":
            counts = Counter(keys + [self.key(item.answer)])
            return counts.most_common(1)[0][1] / (len(keys) + 1)
        target = self.key(item.answer)
        return sum(k == target for k in keys) / len(keys)

    def _score(self, item: JudgeInput) -> float:
        samples = [self.client.complete(self._messages(item, i), **self._options(i)).text for i in range(self.k)]
        return self._agreement(item, samples)

    async def _ascore(self, item: JudgeInput) -> float:
        replies = await asyncio.gather(*(self.client.acomplete(self._messages(item, i), **self._options(i))
                                         for i in range(self.k)))
        return self._agreement(item, [r.text for r in replies])


__all__ = ["ConsistencyJudge", "DEFAULT_VARIANTS"]
