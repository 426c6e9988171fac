"""`VerbalizedConfidenceJudge`: ask a model how confident it is that the answer is right.

M. Xiong et al. (2024), "Can LLMs Express Their Uncertainty? An Empirical Evaluation of Confidence Elicitation
in LLMs": the model is shown the question and the proposed answer and states a confidence from 0 to 100.
Estimates P(correct) as the model verbalises it; cheap (one short call) but often overconfident, so calibrate
the threshold on data (:meth:`~rag_routing.routers.judges.base.Judge.calibrate`) rather than trusting 0.5.

A reply without a readable number scores ``on_unparsable`` (default 0.0: distrust, so the cascade escalates)
and is counted in ``unparsable_``.

Example (a scripted model stands in for a paid API; any LangChain chat model or LocalLLM works):
    >>> from rag_routing.candidates import Pricing
    >>> judge = VerbalizedConfidenceJudge(lambda prompt: "Confidence: 85%", model="rater",
    ...                                   pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0))
    >>> judge.score("Capital of France?", "Paris")
    0.85
"""

from __future__ import annotations

import re
from typing import Any

from rag_routing.routers.judges.base import Judge, JudgeInput
from rag_routing.routers.judges.llm_client import LLMClient

SYSTEM = ("You check answers. Read the question and the proposed answer, then state how confident you are that "
          "the proposed answer is correct, as a number from 0 to 100. Reply exactly in the form "
          "'Confidence: <number>'.")
_LABELLED = re.compile(r"confiden\w*\W{0,3}(\d{1,3}(?:\.\d+)?)\s*(%?)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s*(%?)")


def parse_confidence(text: str) -> float | None:
    """A confidence in [0, 1] from a reply ("Confidence: 85", "85%", "0.85"), or ``None``.

    Example:
        >>> parse_confidence("Confidence: 70"), parse_confidence("about 0.9"), parse_confidence("unsure")
        (0.7, 0.9, None)
    """
    for pattern in (_LABELLED, _NUMBER):
        for match in pattern.finditer(text):
            value, percent = float(match.group(1)), match.group(2)
            if percent or value > 1.0 or "." not in match.group(1):
                value /= 100.0
            if 0.0 <= value <= 1.0:
                return value
    return None


class VerbalizedConfidenceJudge(Judge):
    """The model's stated confidence (0-100) that the answer is correct, divided by 100 (Xiong et al. 2024).

    Args:
        llm: the rating model (LocalLLM, a LangChain chat model or a callable); often the answering model.
        system: the instruction; the user message holds the question, context and proposed answer.
        max_tokens: reply length cap.
        on_unparsable: the score of a reply without a number.
        threshold: accept at or above this confidence.
        client_options: ``model=``, ``pricing=``, ``allow_unpriced=`` for the ledger (see ``LLMClient``).
    """

    name = "verbalized_confidence"

    def __init__(self, llm: Any, *, system: str = SYSTEM, max_tokens: int = 12, on_unparsable: float = 0.0,
                 threshold: float = 0.5, **client_options: Any):
        super().__init__(threshold=threshold)
        self.client = LLMClient(llm, stage="judge", component=self.name, **client_options)
        self.system, self.max_tokens = system, max_tokens
        self.on_unparsable = float(on_unparsable)
        self.unparsable_ = 0

    def messages(self, item: JudgeInput) -> list[dict[str, str]]:
        context = "" if item.context is None else f"Context:\n{item.context}\n\n"
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": f"{context}Question: {item.query}\nProposed answer: {item.answer}"}]

    def _parse(self, text: str) -> float:
        value = parse_confidence(text)
        if value is None:
            self.unparsable_ += 1
            return self.on_unparsable
        return value

    def _score(self, item: JudgeInput) -> float:
        reply = self.client.complete(self.messages(item), max_tokens=self.max_tokens, temperature=0.0)
        return self._parse(reply.text)

    async def _ascore(self, item: JudgeInput) -> float:
        reply = await self.client.acomplete(self.messages(item), max_tokens=self.max_tokens, temperature=0.0)
        return self._parse(reply.text)


__all__ = ["VerbalizedConfidenceJudge", "parse_confidence"]
