"""Answer scorers: how good is a candidate's answer to a query, in [0, 1], given reference answers.

The quality cells of a routing table (:class:`~rag_routing.evaluation.dataset.RoutingDataset`) come from one
of these. Every scorer answers ``score(query, answer, references) -> float in [0, 1]``; any model call it
makes goes through the ambient cost ledger (:func:`~rag_routing.ledger.scope.ledger_scope`), under the stage
``"label_judge"`` and the scorer's name, so the price of labelling shows up in the bill.

* :class:`ExactMatchScorer`, :class:`TokenF1Scorer`, :class:`ContainsAnswerScorer` — SQuAD's exact match and
  token F1 (Rajpurkar et al. 2016) and Adaptive-RAG's containment accuracy (Jeong et al. 2024), through
  :func:`~rag_routing.evaluation.answer_metrics.score_answer` (max over the references). No model, no ledger entry.
* :class:`SemanticSimilarityScorer` — cosine similarity of the answer's and each reference's sentence
  embedding (the offline MiniLM by default; BERTScore-like in spirit, Zhang et al. 2020), the best reference
  counts, negative cosines count as 0. The embedding call is recorded at $0 with its seconds.
* :class:`LLMJudgeScorer` — an LLM grades the answer against the references from 0 to ``scale``
  (LLM-as-a-judge, Zheng et al. 2023), divided by ``scale``. Any model :class:`~rag_routing.routers.judges.
  llm_client.LLMClient` accepts (LocalLLM, a LangChain chat model, a callable). The reply is validated: only
  ``Score: n``, ``{"score": n}`` or a bare ``n`` (or ``n/scale``) within range is read; anything else raises
  :class:`~rag_routing.errors.JudgeReplyError`, or scores the declared ``on_unparsable`` (counted in
  ``unparsable_``), never a silent 1.0.

Example:
    >>> TokenF1Scorer().score("Who wrote Faust?", "Johann Goethe", ["Goethe"])
    0.6666666666666666
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.ledger import ledger_scope
    >>> judge = LLMJudgeScorer(lambda prompt: "Score: 8", model="grader",
    ...                        pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0))
    >>> with ledger_scope() as ledger:
    ...     judge.score("Capital of Peru?", "Lima, the capital", ["Lima"])
    0.8
    >>> ledger.entries[0].stage, ledger.entries[0].component, ledger.entries[0].cost_usd > 0
    ('label_judge', 'llm_judge', True)
"""

from __future__ import annotations

import json
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rag_routing.errors import InvalidInputError, JudgeReplyError
from rag_routing.evaluation.answer_metrics import score_answer
from rag_routing.ledger.scope import current_ledger

#: Ledger stage of every call a scorer makes.
LABEL_JUDGE_STAGE = "label_judge"


def _references(references: Sequence[str] | str | None) -> list[str]:
    if references is None:
        return []
    if isinstance(references, str):
        references = [references]
    if not isinstance(references, Sequence):
        raise InvalidInputError(f"references must be a list of strings, got {type(references).__name__}")
    for ref in references:
        if not isinstance(ref, str):
            raise InvalidInputError(f"a reference answer is {type(ref).__name__}; references must be strings")
    return [r for r in references if r.strip()]


class AnswerScorer(ABC):
    """Scores an answer in [0, 1] (see module docstring). Subclasses implement :meth:`_score`.

    ``needs_references`` is True for scorers that compare with reference answers: calling them without one
    is an :class:`~rag_routing.errors.InvalidInputError` rather than a silent 0.
    """

    name: ClassVar[str] = "scorer"
    needs_references: ClassVar[bool] = True

    def score(self, query: str, answer: str, references: Sequence[str] | str | None = None) -> float:
        """The answer's quality in [0, 1]."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string")
        if not isinstance(answer, str):
            raise InvalidInputError(f"answer must be a string, got {type(answer).__name__}")
        refs = _references(references)
        if self.needs_references and not refs:
            raise InvalidInputError(f"the {self.name} scorer compares with reference answers; none given for "
                                    f"query {query[:60]!r}")
        value = float(self._score(query, answer, refs))
        if not math.isfinite(value) or not -1e-9 <= value <= 1.0 + 1e-9:
            raise RuntimeError(f"scorer {self.name!r} returned {value!r}; a score must be in [0, 1]")
        return min(1.0, max(0.0, value))

    @abstractmethod
    def _score(self, query: str, answer: str, references: list[str]) -> float:
        """The score of validated input (``references`` non-empty when ``needs_references``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _SquadScorer(AnswerScorer):
    metric: ClassVar[str] = "em"

    def _score(self, query: str, answer: str, references: list[str]) -> float:
        return score_answer(answer, references)[self.metric]


class ExactMatchScorer(_SquadScorer):
    """1 when the SQuAD-normalised answer equals a reference, else 0."""

    name, metric = "exact_match", "em"


class TokenF1Scorer(_SquadScorer):
    """Token-level F1 between the normalised answer and the best reference (SQuAD)."""

    name, metric = "token_f1", "f1"


class ContainsAnswerScorer(_SquadScorer):
    """1 when a normalised reference occurs in the normalised answer (fair to answers given in a sentence)."""

    name, metric = "contains", "acc"


class SemanticSimilarityScorer(AnswerScorer):
    """``max(0, cos(answer, reference))`` of sentence embeddings, the best reference (see module docstring).

    Args:
        embedder: ``"minilm"`` (the offline all-MiniLM-L6-v2, cached on disk), a sentence-transformers name, or
            an object with ``transform(texts) -> (n, d)`` L2-normalised rows.
    """

    name = "semantic_similarity"

    def __init__(self, embedder: Any = "minilm"):
        self.embedder = embedder
        self._featurizer: Any = None

    def _vectors(self, texts: list[str]) -> np.ndarray:
        if self._featurizer is None:
            from rag_routing.embeddings import make_featurizer

            self._featurizer = make_featurizer(self.embedder)
        started = time.perf_counter()
        vectors = np.asarray(self._featurizer.transform(texts), dtype=np.float64)
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(LABEL_JUDGE_STAGE, self.name, str(getattr(self._featurizer, "name", "embedder")),
                          seconds=time.perf_counter() - started, cost_usd=0.0, metadata={"local": True})
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def _score(self, query: str, answer: str, references: list[str]) -> float:
        if not answer.strip():
            return 0.0
        vectors = self._vectors([answer, *references])
        return float(max(0.0, float((vectors[1:] @ vectors[0]).max())))


JUDGE_SYSTEM = ("You grade answers to questions. Compare the candidate answer with the reference answer(s): is it "
                "correct and does it say the same thing? Grade from 0 (wrong or no answer) to {scale} (fully "
                "correct). Reply exactly in the form 'Score: <number>' and nothing else.")
JUDGE_SYSTEM_NO_REFERENCE = ("You grade answers to questions. Is the candidate answer correct and helpful? Grade "
                             "from 0 (wrong or no answer) to {scale} (fully correct). Reply exactly in the form "
                             "'Score: <number>' and nothing else.")
# Markdown emphasis and quotes may wrap the grade; a sign may not (a "-3" is no grade).
_GRADE = r"(\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?[\s*\"'.)\]]*$"
_LABELLED = re.compile(r"^[\s*\"'#(\[]*(?:score|grade|rating)[\s*]*[:=]?[\s*]*" + _GRADE, re.IGNORECASE)
_BARE = re.compile(r"^[\s*\"'#(\[]*" + _GRADE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def parse_grade(text: str, scale: float) -> float | None:
    """A grade in [0, 1] from a judge's reply, or ``None`` when the reply is not a grade.

    Read: ``Score: 7``, ``Score: 7/10``, ``{"score": 7}``, ``7``; the number must lie in ``[0, scale]`` (a
    ``/ d`` suffix must equal ``scale``). Prose around the number is *not* read: "the answer has 2 errors"
    is no grade.

    Example:
        >>> parse_grade("Score: 7", 10), parse_grade('{"score": 10}', 10), parse_grade("It is 2 parts right", 10)
        (0.7, 1.0, None)
        >>> parse_grade("Score: 12", 10) is None
        True
    """
    reply = text.strip()
    fenced = _FENCE.match(reply)
    if fenced:
        reply = fenced.group(1).strip()
    value: float | None = None
    denominator: str | None = None
    if reply.startswith("{"):
        try:
            data = json.loads(reply)
        except json.JSONDecodeError:
            return None
        raw = data.get("score") if isinstance(data, dict) else None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            return None
        value = float(raw)
    else:
        line = reply.splitlines()[0] if reply else ""
        match = _LABELLED.match(line) or _BARE.match(line)
        if match is None:
            return None
        value, denominator = float(match.group(1)), match.group(2)
    if denominator is not None and float(denominator) != float(scale):
        return None
    if not math.isfinite(value) or not 0.0 <= value <= scale:
        return None
    return value / scale


class LLMJudgeScorer(AnswerScorer):
    """An LLM grades the answer against the references (see module docstring); its calls are billed in the
    ambient ledger under ``stage="label_judge"``, ``component=name``.

    Args:
        llm: the judge model (LocalLLM, a LangChain chat model, a callable prompt -> text, or an ``LLMClient``).
        scale: the top grade (the grade is divided by it).
        on_unparsable: ``None`` raises :class:`~rag_routing.errors.JudgeReplyError` on a reply that is not a
            grade; a number in [0, 1] is used as the score instead (and counted in ``unparsable_``).
        require_references: False lets the judge grade without references (correctness alone).
        max_tokens: reply length cap.
        name: the ledger component (default ``"llm_judge"``).
        client_options: ``model=``, ``pricing=``, ``allow_unpriced=`` for the ledger (see ``LLMClient``).
    """

    name = "llm_judge"

    def __init__(self, llm: Any, *, scale: float = 10.0, on_unparsable: float | None = None,
                 require_references: bool = True, max_tokens: int = 16, name: str | None = None,
                 **client_options: Any):
        from rag_routing.routers.judges.llm_client import LLMClient

        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
                and scale > 0):
            raise InvalidInputError(f"scale must be a positive number, got {scale!r}")
        if on_unparsable is not None and not 0.0 <= float(on_unparsable) <= 1.0:
            raise InvalidInputError(f"on_unparsable must be None (raise) or a score in [0, 1], got {on_unparsable!r}")
        self.name = name or type(self).name  # type: ignore[misc]
        if isinstance(llm, LLMClient):  # keep its model name and prices; only the ledger labels change
            if client_options:
                raise InvalidInputError(f"pass {sorted(client_options)} to the LLMClient, not to the judge as well")
            self.client = llm.with_component(LABEL_JUDGE_STAGE, self.name)
        else:
            self.client = LLMClient(llm, stage=LABEL_JUDGE_STAGE, component=self.name, **client_options)
        self.scale, self.on_unparsable, self.max_tokens = float(scale), on_unparsable, max_tokens
        self.require_references = require_references
        self.unparsable_ = 0

    @property
    def needs_references(self) -> bool:  # type: ignore[override]
        return self.require_references

    def messages(self, query: str, answer: str, references: list[str]) -> list[dict[str, str]]:
        """The judge's prompt."""
        scale = f"{self.scale:g}"
        if references:
            refs = "\n".join(f"- {r}" for r in references)
            system = JUDGE_SYSTEM.format(scale=scale)
            user = f"Question: {query}\nReference answer(s):\n{refs}\nCandidate answer: {answer}"
        else:
            system = JUDGE_SYSTEM_NO_REFERENCE.format(scale=scale)
            user = f"Question: {query}\nCandidate answer: {answer}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _score(self, query: str, answer: str, references: list[str]) -> float:
        reply = self.client.complete(self.messages(query, answer, references), max_tokens=self.max_tokens,
                                     temperature=0.0)
        grade = parse_grade(reply.text, self.scale)
        if grade is not None:
            return grade
        self.unparsable_ += 1
        if self.on_unparsable is None:
            raise JudgeReplyError(f"judge {self.client.model!r} replied {reply.text[:120]!r}, which is not a grade "
                                  f"'Score: <0-{self.scale:g}>'; fix the judge's prompt or model, or pass "
                                  "on_unparsable=<score> to declare a fallback")
        return float(self.on_unparsable)

    def __repr__(self) -> str:
        return f"LLMJudgeScorer({self.client!r}, scale={self.scale:g})"


#: Short names for :func:`make_scorer` and ``rag-routing label --scorer``.
SCORERS: dict[str, type[AnswerScorer]] = {
    "em": ExactMatchScorer, "f1": TokenF1Scorer, "contains": ContainsAnswerScorer,
    "semantic": SemanticSimilarityScorer, "llm_judge": LLMJudgeScorer}


def make_scorer(name: str, **kwargs: Any) -> AnswerScorer:
    """The scorer registered as ``name`` (one of :data:`SCORERS`; ``llm_judge`` needs ``llm=``)."""
    if name not in SCORERS:
        raise InvalidInputError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    return SCORERS[name](**kwargs)


__all__ = ["AnswerScorer", "ExactMatchScorer", "TokenF1Scorer", "ContainsAnswerScorer", "SemanticSimilarityScorer",
           "LLMJudgeScorer", "parse_grade", "make_scorer", "SCORERS", "LABEL_JUDGE_STAGE"]
