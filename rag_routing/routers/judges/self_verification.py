"""`SelfVerificationJudge`: AutoMix's few-shot self-verification, sampled k times.

P. Aggarwal et al. (2024), "AutoMix: Automatically Mixing Language Models": the (small) model that answered is
shown a few-shot *verification prompt* — context, question, its answer — and asked whether the answer is correct;
the verification is sampled ``k`` times at a high temperature and the share of "Correct" verdicts is the score.
Estimates P(correct) from the model's own consistency as a verifier; costs ``k`` calls, each recorded in the
ledger under ``stage="judge"``.

A verdict is the first of the words "incorrect" / "correct" in a reply; a reply with neither counts as not
correct (the conservative reading) and is counted in ``unparsable_``. The verdicts of the last call are kept in
``last_verdicts_``.

Example:
    >>> from rag_routing.candidates import Pricing
    >>> replies = iter(["Correct.", "The answer is Incorrect", "correct", "Correct"])
    >>> judge = SelfVerificationJudge(lambda prompt: next(replies), k=4, model="verifier",
    ...                               pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0))
    >>> judge.score("Who wrote Faust?", "Goethe", context="Faust is a play by Goethe.")
    0.75
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.routers.judges.base import Judge, JudgeInput
from rag_routing.routers.judges.llm_client import LLMClient

INSTRUCTION = ("Instruction: Your task is to evaluate if the AI Generated Answer is correct, based on the "
               "provided context and question. Reply with Correct or Incorrect, then one short reason.")

FEW_SHOT = (
    "Context: The manager noticed that the quality lapse came from a new supplier of screws.\n"
    "Question: What caused the lapse in quality?\n"
    "AI Generated Answer: A new supplier of screws.\n"
    f"{INSTRUCTION}\n"
    "Evaluation: Correct. The context names the new screw supplier as the cause.\n\n"
    "Context: Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.\n"
    "Question: In which year did Marie Curie win the Nobel Prize in Chemistry?\n"
    "AI Generated Answer: 1903\n"
    f"{INSTRUCTION}\n"
    "Evaluation: Incorrect. The context says Chemistry was 1911; 1903 was Physics.\n\n"
)
_VERDICT = re.compile(r"\b(incorrect|correct)\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """True for "Correct", False for "Incorrect" (the first one in the reply), ``None`` for neither."""
    match = _VERDICT.search(text)
    return None if match is None else match.group(1).lower() == "correct"


class SelfVerificationJudge(Judge):
    """Share of ``k`` sampled few-shot verifications that say "Correct" (AutoMix, Aggarwal et al. 2024).

    Args:
        llm: the verifying model (usually the one that answered).
        k: verifications sampled per answer.
        temperature: sampling temperature of the verifications (AutoMix samples at a high temperature).
        few_shot: the worked examples put before the case to verify.
        seed: base seed; sample ``i`` uses ``seed + i`` (reproducible), ``None`` draws fresh samples.
        max_tokens: length cap of each verification.
        threshold: accept at or above this share.
        client_options: ``model=``, ``pricing=``, ``allow_unpriced=`` (see ``LLMClient``).
    """

    name = "self_verification"

    def __init__(self, llm: Any, *, k: int = 4, temperature: float = 0.7, few_shot: str = FEW_SHOT,
                 seed: int | None = None, max_tokens: int = 24, threshold: float = 0.5, **client_options: Any):
        super().__init__(threshold=threshold)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
        self.client = LLMClient(llm, stage="judge", component=self.name, **client_options)
        self.k, self.temperature, self.few_shot, self.seed, self.max_tokens = k, temperature, few_shot, seed, max_tokens
        self.unparsable_ = 0
        self.last_verdicts_: list[bool | None] = []

    def prompt(self, item: JudgeInput) -> str:
        context = item.context if item.context is not None else "(none given)"
        return (f"{self.few_shot}Context: {context}\nQuestion: {item.query}\nAI Generated Answer: {item.answer}\n"
                f"{INSTRUCTION}\nEvaluation:")

    def _seed(self, i: int) -> int | None:
        return None if self.seed is None else self.seed + i

    def _share(self, texts: list[str]) -> float:
        verdicts = [parse_verdict(t) for t in texts]
        self.unparsable_ += sum(v is None for v in verdicts)
        self.last_verdicts_ = verdicts
        return sum(v is True for v in verdicts) / len(verdicts)

    def _score(self, item: JudgeInput) -> float:
        prompt = self.prompt(item)
        texts = [self.client.complete(prompt, max_tokens=self.max_tokens, temperature=self.temperature,
                                      seed=self._seed(i)).text for i in range(self.k)]
        return self._share(texts)

    async def _ascore(self, item: JudgeInput) -> float:
        prompt = self.prompt(item)
        replies = await asyncio.gather(*(self.client.acomplete(prompt, max_tokens=self.max_tokens,
                                                               temperature=self.temperature, seed=self._seed(i))
                                         for i in range(self.k)))
        return self._share([r.text for r in replies])


__all__ = ["SelfVerificationJudge", "parse_verdict", "FEW_SHOT", "INSTRUCTION"]
