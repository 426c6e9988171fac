"""Cascades: run a cheap candidate first and escalate while a judge distrusts the answer.

* :class:`CascadeRouter` — a fixed order, cheapest first (FrugalGPT, Chen et al. 2023; AutoMix, Aggarwal et
  al. 2024): stop at the first answer whose judge score reaches the threshold. Estimates nothing before the
  call; pays for every model it calls.
* :class:`MultiChoiceCascade` — Dekoninck et al. (2025), "A Unified Approach to Routing and Cascading for
  LLMs": after each answer, the next candidate is chosen among *all* remaining ones by the shared rule
  ``argmax S - λC  s.t. C <= B`` (:func:`rag_routing.decision.select`), where the qualities ``S`` of the
  remaining candidates are updated from the judge's score and "stop" is an option worth the best answer so far.

**Online** (``invoke`` / ``ainvoke``): candidates are live models (a LocalLLM, any LangChain chat model, a
callable; see :class:`~rag_routing.routers.judges.llm_client.LLMClient`). Every call and every judge call is
recorded in the ambient ledger with the cascade's ``decision_id``. Before each step the estimate is reserved:
when the ledger's budget (or the router's per-query ``budget``) cannot afford it, the step is refused *before*
the call, the cascade stops, and the result says why and returns the best answer so far.

**Offline** (``fit`` on a :class:`RoutingDataset` with ``responses``): the cascade trains an
:class:`~rag_routing.routers.judges.AnswerScorerJudge` on the situations it will meet, chooses its order on
the training set, and :meth:`CascadeRouter.operating_points` replays it on a test set with recorded answers:
the cost of a query is the sum of the costs of every model called (the local scorer costs $0).

**Under shift** (:mod:`rag_routing.routers.cascade_guard`): ``fit`` keeps the judge's held-out first-call scores;
live scores (a window of ``invoke`` calls) or a test set's (``operating_points``) are compared with them, label-free,
and when they drift every query goes to the best fixed candidate (best training-mean quality - λ·cost), the same
fallback as a pre-generation router out of support. A run stopped early returns the strongest answer it paid for.

Example (offline; a cascade is not λ-sweepable, its curve comes from its threshold):
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> rng = np.random.default_rng(0)
    >>> right = rng.random((200, 2)) < [0.6, 0.9]
    >>> answers = [["4" if r[0] else "5", "4" if r[1] else "3"] for r in right]
    >>> ds = RoutingDataset([f"question {i}" for i in range(200)], ["small", "large"], right.astype(float),
    ...                     np.tile([0.001, 0.01], (200, 1)), responses=answers)
    >>> cascade = CascadeRouter(featurizer="tfidf", order=["small", "large"]).fit(ds)
    >>> costs, qualities = cascade.cost_quality_points(ds)
    >>> round(float(costs.min()), 4), round(float(costs.max()), 4)
    (0.001, 0.011)
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from rag_routing.candidates import Candidate, Pricing
from rag_routing.errors import (
    BudgetExceededError,
    InvalidInputError,
    NotFittedError,
    UnknownCandidateError,
)
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.metrics import aiq
from rag_routing.evaluation.sweep import OperatingPoints
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import current_ledger, ledger_scope
from rag_routing.ledger.stage_names import GENERATION
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.routers.support import GuardSettings
from rag_routing.routers.cascade_guard import (
    JudgeCalibration,
    LiveJudgeWindow,
    fixed_candidate,
    fixed_operating_points,
)
from rag_routing.routers.cascade_replay import cost_quality_front, replay_chain
from rag_routing.routers.judges import (
    AnswerScorerJudge,
    Judge,
    LLMClient,
    SequenceProbabilityJudge,
    TokenMarginJudge,
)
from rag_routing.routers.judges.llm_client import Completion, decision_scope


@dataclass
class Attempt:
    """One step of a cascade: who answered, what the judge said, what it cost."""

    candidate: str
    answer: str | None
    score: float | None
    cost_usd: float
    judge_cost_usd: float = 0.0
    seconds: float = 0.0
    accepted: bool = False


@dataclass
class CascadeResult:
    """The answer a cascade returns, every attempt it made, and why it stopped."""

    answer: str | None
    candidate: str | None
    attempts: list[Attempt]
    reason: str
    decision_id: str
    stopped_by_budget: bool = False

    @property
    def cost_usd(self) -> float:
        """US $ of every call the cascade made, its judges' included."""
        return float(sum(a.cost_usd + a.judge_cost_usd for a in self.attempts))


@dataclass
class _Run:
    query: str
    context: str | None
    decision_id: str
    attempts: list[Attempt] = field(default_factory=list)
    quality: np.ndarray | None = None  # multi-choice beliefs
    reason: str = ""
    by_budget: bool = False
    #: The best fixed candidate, when the judge drifted and the run bypasses the cascade.
    fixed: str | None = None

    @property
    def spent(self) -> float:
        return sum(a.cost_usd + a.judge_cost_usd for a in self.attempts)

    def previous(self) -> list[tuple[str, str]]:
        return [(a.candidate, a.answer) for a in self.attempts if a.answer is not None]


class CascadeRouter(Router):
    """Fixed-order cascade with a judge (see module docstring).

    Args:
        candidates: online models, cheapest first: ``(name, llm)``, ``(name, llm, Pricing)`` or
            :class:`~rag_routing.candidates.Candidate` (``target`` = the model). Not needed offline.
        judge: scores each answer; offline default: an :class:`AnswerScorerJudge` trained by :meth:`fit`.
        threshold: accept at or above this score (default: the judge's ``threshold``).
        order: candidate names, cheapest first; offline default: the cost-quality front of the training set,
            the subsequence (ending at the best candidate) with the best cross-validated AIQ.
        budget: per-query US $ limit (besides the ambient ledger's budget).
        max_tokens, system_prompt: how candidates are asked; ``judge_last``: also judge the last answer.
        max_chain, n_folds, seed: the offline order search.
    """

    name = "cascade"
    #: Needs response texts (RouterBench); name it explicitly in `rag-routing bench --routers`.
    in_bench_all = False
    #: A cascade estimates nothing per query before the call; its guard is the judge-drift check instead.
    guard_settings = GuardSettings.off()

    def __init__(self, candidates: Sequence[Any] | None = None, *, judge: Judge | None = None,
                 threshold: float | None = None, order: Sequence[str] | None = None, lam: float = 0.0,
                 budget: float | None = None, fallback: str | None = None, featurizer: Any = None,
                 max_tokens: int = 256, system_prompt: str | None = None, judge_last: bool = False,
                 max_chain: int = 4, n_folds: int = 3, seed: int = 0):
        super().__init__(lam=lam, budget=budget, fallback=fallback, featurizer=featurizer)
        self.candidates, self.judge, self.threshold = candidates, judge, threshold
        self.order = None if order is None else list(order)
        self.max_tokens, self.system_prompt, self.judge_last = max_tokens, system_prompt, judge_last
        self.max_chain, self.n_folds, self.seed = max_chain, n_folds, seed
        self.clients_ = _clients(candidates) if candidates is not None else {}
        if self.order is None and self.clients_:
            self.order = list(self.clients_)

    def get_params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "order": self.order, "lam": self.lam, "budget": self.budget,
                "fallback": self.fallback, "max_tokens": self.max_tokens, "judge_last": self.judge_last,
                "max_chain": self.max_chain, "n_folds": self.n_folds, "seed": self.seed}

    # ------------------------------------------------------------------ online
    def invoke(self, query: str, context: str | None = None, *, decision_id: str | None = None) -> CascadeResult:
        """Run the cascade on live models for one query (see module docstring)."""
        run = self._start(query, context, decision_id)
        with self._scopes(run):
            while (name := self._next_step(run)) is not None:
                try:
                    reply = self.clients_[name].complete(self._messages(run), max_tokens=self.max_tokens,
                                                         decision_id=run.decision_id, **self._logprob_options())
                except BudgetExceededError as exc:
                    self._refused(run, f"the call to {name!r}", exc)
                    break
                try:
                    score, judge_cost = self._judge(run, name, reply)
                except BudgetExceededError as exc:
                    self._unjudged(run, name, reply, exc)
                    break
                if self._after(run, name, reply, score, judge_cost):
                    break
        return self._result(run)

    async def ainvoke(self, query: str, context: str | None = None, *,
                      decision_id: str | None = None) -> CascadeResult:
        """:meth:`invoke` with async model and judge calls."""
        run = self._start(query, context, decision_id)
        with self._scopes(run):
            while (name := self._next_step(run)) is not None:
                try:
                    reply = await self.clients_[name].acomplete(self._messages(run), max_tokens=self.max_tokens,
                                                                decision_id=run.decision_id,
                                                                **self._logprob_options())
                except BudgetExceededError as exc:
                    self._refused(run, f"the call to {name!r}", exc)
                    break
                try:
                    score, judge_cost = await self._ajudge(run, name, reply)
                except BudgetExceededError as exc:
                    self._unjudged(run, name, reply, exc)
                    break
                if self._after(run, name, reply, score, judge_cost):
                    break
        return self._result(run)

    @property
    def active_judge(self) -> Judge | None:
        """The judge online calls use: the one trained by :meth:`fit`, else the one given."""
        return getattr(self, "judge_", None) or self.judge

    def _online_order(self) -> list[str]:
        fitted = getattr(self, "order_", None)
        if fitted and set(fitted) <= set(self.clients_):
            return list(fitted)
        return list(self.order or self.clients_)

    def _start(self, query: str, context: str | None, decision_id: str | None) -> _Run:
        if not self.clients_:
            raise InvalidInputError("this cascade has no live candidates: pass candidates=[(name, llm), ...]")
        if self.active_judge is None:
            raise InvalidInputError("an online cascade needs a judge (e.g. TokenMarginJudge())")
        return _Run(validate_queries(query)[0], context, decision_id or uuid.uuid4().hex)

    def _scopes(self, run: _Run) -> ExitStack:
        stack = ExitStack()
        if current_ledger() is None:
            stack.enter_context(ledger_scope(CostLedger()))  # so every attempt is priced
        stack.enter_context(decision_scope(run.decision_id))
        return stack

    def _messages(self, run: _Run) -> list[dict[str, str]]:
        system = self.system_prompt or ""
        if run.context is not None:
            system = f"{system}\n\nAnswer using this context:\n{run.context}".strip()
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": run.query}]

    def _logprob_options(self) -> dict[str, Any]:
        wants = isinstance(self.active_judge, (TokenMarginJudge, SequenceProbabilityJudge))
        return {"logprobs": True, "top_logprobs": 5} if wants else {}

    def _affordable(self, run: _Run, name: str) -> str | None:
        """Why ``name`` cannot be afforded now (``None`` if it can)."""
        estimate = self.clients_[name].estimate_usd(self._messages(run), self.max_tokens)
        if self.budget is not None and run.spent + estimate > self.budget:
            return (f"budget: {name!r} needs about ${estimate:.6g} but only ${max(0.0, self.budget - run.spent):.6g}"
                    f" of the per-query budget ${self.budget:.6g} is left")
        ledger = current_ledger()
        if ledger is not None and ledger.budget is not None and not ledger.budget.can_afford(usd=estimate):
            return (f"budget: {name!r} needs about ${estimate:.6g} but the ledger's budget has "
                    f"${ledger.budget.remaining().usd:.6g} left")
        return None

    def _drift_step(self, run: _Run) -> tuple[bool, str | None]:
        """(handled, step): after a judge-drift alarm the run calls only the best fixed candidate, unjudged."""
        window = self.__dict__.get("live_judge_")
        if window is None or not window.drifted:
            return False, None
        if run.attempts:
            run.reason = run.reason or (f"judge drift: the best fixed candidate {run.fixed!r} answered instead of "
                                        f"the cascade ({window.drift.reason})")
            return True, None
        run.fixed = self._fixed_online()
        return True, run.fixed

    def _fixed_online(self) -> str:
        names = self._online_order()
        if self.is_fitted and set(names) <= set(self.candidates_):
            at = [self.candidates_.index(n) for n in names]
            return names[fixed_candidate(self.prior_[at], self.mean_cost_[at], self.lam, self.budget)]
        return names[-1]  # unfitted: the last (strongest) of the order

    def _next_step(self, run: _Run) -> str | None:
        handled, step = self._drift_step(run)
        if handled:
            return step
        order = self._online_order()
        if run.reason:
            return None
        tried = {a.candidate for a in run.attempts}
        upcoming = [n for n in order if n not in tried]
        if not upcoming:
            run.reason = run.reason or "every candidate answered"
            return None
        why = self._affordable(run, upcoming[0])
        if why is not None:
            run.reason, run.by_budget = why, True
            return None
        return upcoming[0]

    def _is_last(self, run: _Run, name: str) -> bool:
        tried = {a.candidate for a in run.attempts}
        return run.fixed is not None or all(n in tried or n == name for n in self._online_order())

    def _judge(self, run: _Run, name: str, reply: Completion) -> tuple[float | None, float]:
        if self._is_last(run, name) and not self.judge_last:
            return None, 0.0
        ledger = current_ledger()
        before = 0 if ledger is None else len(ledger)
        judge = self.active_judge
        assert judge is not None
        score = judge.score(run.query, reply.text, run.context, generation=reply, candidate=name,
                                 previous=run.previous())
        return score, _judge_cost(ledger, before, run.decision_id)

    async def _ajudge(self, run: _Run, name: str, reply: Completion) -> tuple[float | None, float]:
        if self._is_last(run, name) and not self.judge_last:
            return None, 0.0
        ledger = current_ledger()
        before = 0 if ledger is None else len(ledger)
        judge = self.active_judge
        assert judge is not None
        score = await judge.ascore(run.query, reply.text, run.context, generation=reply, candidate=name,
                                        previous=run.previous())
        return score, _judge_cost(ledger, before, run.decision_id)

    def _accept_at(self) -> float:
        judge = self.active_judge
        assert judge is not None
        return judge.threshold if self.threshold is None else float(self.threshold)

    def _after(self, run: _Run, name: str, reply: Completion, score: float | None, judge_cost: float) -> bool:
        """Record the attempt; True when the cascade stops here."""
        accepted = score is not None and score >= self._accept_at()
        if score is not None and not run.attempts:  # first-step scores: compared with the calibration ones
            window = self.__dict__.setdefault("live_judge_", LiveJudgeWindow())
            window.add(score, getattr(self, "judge_calibration_", {}).get(name), self._accept_at())
        run.attempts.append(Attempt(name, reply.text, score, reply.cost_usd, judge_cost, reply.seconds, accepted))
        if run.fixed is not None:
            run.attempts[-1].accepted = True
            run.reason = (f"judge drift: the best fixed candidate {name!r} answered instead of the cascade "
                          f"({self.live_judge_.drift.reason})")
            return True
        if accepted:
            run.reason = f"accepted {name!r}: judge score {score:.3g} >= threshold {self._accept_at():.3g}"
        elif score is None:
            run.attempts[-1].accepted = True
            run.reason = f"{name!r} is the last candidate (its answer is not judged)"
        self._update(run, name, score)
        return bool(run.reason)

    def _update(self, run: _Run, name: str, score: float | None) -> None:
        """Hook for beliefs (multi-choice); nothing for a fixed order."""

    def _refused(self, run: _Run, what: str, exc: BudgetExceededError) -> None:
        run.reason, run.by_budget = f"budget: {what} was refused before it ran ({exc})", True

    def _unjudged(self, run: _Run, name: str, reply: Completion, exc: BudgetExceededError) -> None:
        run.attempts.append(Attempt(name, reply.text, None, reply.cost_usd, 0.0, reply.seconds))
        self._refused(run, f"the judge of {name!r}", exc)

    def _result(self, run: _Run) -> CascadeResult:
        chosen = next((a for a in run.attempts if a.accepted), None)
        if chosen is None and run.attempts:  # stopped early: the best-judged answer so far ...
            chosen = max(run.attempts, key=lambda a: -1.0 if a.score is None else a.score)
            strongest = max(run.attempts, key=lambda a: self._strength(a.candidate))
            if self._strength(strongest.candidate) > self._strength(chosen.candidate):
                chosen = strongest  # ... unless a stronger candidate was paid for: never a worse answer for more
                run.reason += f"; returned {chosen.candidate!r}, the strongest candidate called"
        return CascadeResult(None if chosen is None else chosen.answer, None if chosen is None else chosen.candidate,
                             run.attempts, run.reason, run.decision_id, run.by_budget)

    def _strength(self, name: str) -> float:
        """Training-mean quality of ``name`` (unfitted: its position in the order, the last the strongest)."""
        if self.is_fitted and name in self.candidates_:
            return float(self.prior_[self.candidates_.index(name)])
        order = self._online_order()
        return float(order.index(name)) if name in order else -1.0

    # ------------------------------------------------------------------ offline
    def fit(self, dataset: RoutingDataset) -> CascadeRouter:
        """Train the judge on ``dataset``'s recorded answers (and choose the order); returns ``self``."""
        if isinstance(dataset, RoutingDataset) and dataset.responses is None:
            raise InvalidInputError("a cascade learns from recorded answers: the dataset needs responses "
                                    "(RouterBench's '<model>|model_response' columns)")
        return super().fit(dataset)  # type: ignore[return-value]

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self.prior_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)
        if self.order is not None:
            for name in self.order:
                dataset.candidate_index(name)
            self.order_ = list(self.order)
        else:
            self.order_ = self._choose_order(dataset, features)
        rows = np.arange(len(dataset))
        self.judge_ = self._train_judge(dataset, features, rows)
        self.judge_calibration_ = self._calibrate_judge(dataset, features, self.order_[:1])

    def _calibrate_judge(self, dataset: RoutingDataset, features: np.ndarray | None,
                         names: Sequence[str]) -> dict[str, JudgeCalibration]:
        """Held-out first-call judge scores of ``names`` (each fold's judge scores rows it did not train on)."""
        if len(self.order_) < 2:
            return {}
        folds = np.random.default_rng(self.seed + 1).permutation(len(dataset)) % max(2, self.n_folds)
        scores = {name: np.full(len(dataset), np.nan) for name in names}
        responses = dataset.responses or []
        for fold in np.unique(folds):
            judge = self._train_judge(dataset, features, np.flatnonzero(folds != fold))
            held = np.flatnonzero(folds == fold)
            for name in names:
                j = dataset.candidate_index(name)
                known = [i for i in held if responses[i][j] is not None]
                if known:
                    scores[name][known] = self.judge_scores(dataset, known, name, [[]] * len(known), features, judge)
        threshold = self._accept_at() if np.isfinite(self._accept_at()) else 0.5
        return {n: JudgeCalibration(v, threshold, in_sample=self._in_sample(dataset, features, n, v))
                for n, v in scores.items() if np.isfinite(v).sum() >= 2}

    def _in_sample(self, dataset: RoutingDataset, features: np.ndarray | None, name: str,
                   held_out: np.ndarray) -> np.ndarray:
        """The final judge's first-call scores of ``name`` on the training rows scored in ``held_out``."""
        known = np.flatnonzero(np.isfinite(held_out)).tolist()
        return self.judge_scores(dataset, known, name, [[]] * len(known), features, self.judge_)

    def judge_drift(self, test: RoutingDataset, features: np.ndarray | None = None) -> Any:
        """The label-free comparison of the judge's first-call scores on ``test``'s recorded answers with those at
        calibration (:class:`~rag_routing.routers.cascade_guard.JudgeDrift`, the most drifted candidate's);
        ``None`` when the cascade has no calibration."""
        calibrations = getattr(self, "judge_calibration_", {})
        responses = test.responses or []
        worst = None
        for name, calibration in calibrations.items():
            j = test.candidate_index(name)
            known = [i for i in range(len(test)) if responses[i][j] is not None]
            drift = calibration.check(self.judge_scores(test, known, name, [[]] * len(known), features))
            if worst is None or (drift.drifted, -drift.shape_p_value) > (worst.drifted, -worst.shape_p_value):
                worst = drift
        return worst

    def _drifted_points(self, test: RoutingDataset, features: np.ndarray | None) -> OperatingPoints | None:
        """The best fixed candidate's points (one per λ) when the judge drifted on ``test``, else ``None``."""
        self.last_judge_drift_ = self.judge_drift(test, features)
        if self.last_judge_drift_ is None or not self.last_judge_drift_.drifted:
            return None
        return fixed_operating_points(test, self.prior_, self.mean_cost_)

    def _new_judge(self) -> Judge:
        if isinstance(self.judge, AnswerScorerJudge):  # a template: a fresh copy is trained
            j = self.judge
            return AnswerScorerJudge(featurizer=j.featurizer, mode=j.mode, per_candidate=j.per_candidate, C=j.C,
                                     max_answer_keys=j.max_answer_keys, min_rows=j.min_rows, query_dims=j.query_dims,
                                     threshold=j.threshold)
        if self.judge is not None:
            return self.judge  # a ready judge (LLM-based or custom) is used as given
        return AnswerScorerJudge(featurizer=self.featurizer_ if self.uses_features else "none")

    def _router_features(self, judge: Judge, features: np.ndarray | None, rows: Sequence[int]) -> dict[str, Any]:
        """``query_features`` for a scorer that shares this router's featurizer (computed once)."""
        shared = isinstance(judge, AnswerScorerJudge) and self.uses_features and (
            judge.featurizer is self.featurizer_ or getattr(judge, "featurizer_", None) is self.featurizer_)
        return {"query_features": features[list(rows)]} if shared and features is not None else {}

    def _train_judge(self, dataset: RoutingDataset, features: np.ndarray | None, rows: np.ndarray) -> Judge:
        judge = self._new_judge()
        if not isinstance(judge, AnswerScorerJudge):
            return judge
        q, answers, labels, names, previous, at = self._situations(dataset, rows)
        return judge.fit(q, answers, labels, candidates=names, previous=previous,
                         **self._router_features(judge, features, at))

    def _specs(self, i: int) -> list[tuple[str, list[str]]]:
        """(candidate, earlier candidates) situations of row ``i`` the judge must learn: every step but the last."""
        return [(name, self.order_[:k]) for k, name in enumerate(self.order_[:-1])]

    def _situations(self, dataset: RoutingDataset, rows: np.ndarray) -> tuple[list[Any], ...]:
        """(queries, answers, labels, candidates, previous, row) of every situation of ``rows``."""
        out: tuple[list[Any], ...] = ([], [], [], [], [], [])
        responses = dataset.responses or []
        for i in rows:
            for name, earlier in self._specs(int(i)):
                j = dataset.candidate_index(name)
                if responses[i][j] is None or np.isnan(dataset.quality[i, j]):
                    continue
                previous = [(p, responses[i][dataset.candidate_index(p)]) for p in earlier]
                for column, value in zip(out, (dataset.queries[i], responses[i][j], dataset.quality[i, j], name,
                                               [(p, a) for p, a in previous if a is not None], int(i))):
                    column.append(value)
        return out

    def judge_scores(self, dataset: RoutingDataset, rows: Sequence[int], name: str,
                     earlier: Sequence[Sequence[str]], features: np.ndarray | None = None,
                     judge: Judge | None = None) -> np.ndarray:
        """Scores of ``name``'s recorded answers on ``rows``, each after the candidates in ``earlier[r]``
        (0 where the answer is unknown)."""
        judge = judge or self._fitted_judge()
        responses = dataset.responses or []
        j = dataset.candidate_index(name)
        out = np.zeros(len(rows))
        known = [r for r, i in enumerate(rows) if responses[i][j] is not None]
        if not known:
            return out
        at = [rows[r] for r in known]
        previous = [[(p, responses[rows[r]][dataset.candidate_index(p)]) for p in earlier[r]
                     if responses[rows[r]][dataset.candidate_index(p)] is not None] for r in known]
        out[known] = judge.score_batch([dataset.queries[i] for i in at], [responses[i][j] for i in at],
                                       candidates=[name] * len(at), previous=previous,
                                       **self._router_features(judge, features, at))
        return out

    def step_scores(self, dataset: RoutingDataset, features: np.ndarray | None = None,
                    judge: Judge | None = None) -> np.ndarray:
        """``(n, len(order) - 1)`` judge scores of each step's recorded answer (0 where it is unknown)."""
        rows = list(range(len(dataset)))
        steps = [self.judge_scores(dataset, rows, name, [self.order_[:k]] * len(rows), features, judge)
                 for k, name in enumerate(self.order_[:-1])]
        return np.stack(steps, axis=1) if steps else np.zeros((len(rows), 0))

    def _fitted_judge(self) -> Judge:
        if not hasattr(self, "judge_"):
            raise NotFittedError("fit the cascade on a RoutingDataset with responses first")
        return self.judge_

    def operating_points(self, test: RoutingDataset, thresholds: np.ndarray | None = None) -> OperatingPoints:
        """The cascade replayed on ``test`` at every threshold: mean cost (every call paid) and quality.

        ``lams`` holds the thresholds; ``choices`` the candidate whose answer is returned, per query.
        """
        self._check_fitted()
        test = test.select_candidates(self.candidates_)
        if test.responses is None:
            raise InvalidInputError("replaying a cascade needs the test set's recorded responses")
        features = self.features(test) if self.uses_features else None
        fallback = self._drifted_points(test, features)
        if fallback is not None:
            return fallback
        scores = self.step_scores(test, features)
        return replay_chain(test, [test.candidate_index(c) for c in self.order_], scores, thresholds)

    def cost_quality_points(self, test: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
        """``(costs, qualities)`` of :meth:`operating_points`, for benchmark runners."""
        points = self.operating_points(test)
        return points.cost, points.quality

    def calibrate(self, dataset: RoutingDataset, *, budget: float | None = None,
                  target_escalation: float | None = None) -> float:
        """Set :attr:`threshold` on held-out recorded answers and return it.

        ``budget``: the highest threshold (most escalation) whose mean cost per query fits it;
        ``target_escalation``: the threshold whose share of queries going past the first step is closest.
        """
        if (budget is None) == (target_escalation is None):
            raise InvalidInputError("pass exactly one of budget= or target_escalation=")
        points = self.operating_points(dataset)
        first = dataset.candidate_index(self.order_[0])
        if budget is not None:
            fits = np.flatnonzero(points.cost <= budget + 1e-15)
            if fits.size == 0:
                raise InvalidInputError(f"even stopping at {self.order_[0]!r} costs {points.cost.min():.6g} $ per "
                                        f"query, above the budget {budget:.6g} $")
            at = int(fits.max())
        else:
            escalated = (points.choices != first).mean(axis=1)
            at = int(np.argmin(np.abs(escalated - target_escalation)))
        self.threshold = float(points.lams[at])
        return self.threshold

    def _choose_order(self, dataset: RoutingDataset, features: np.ndarray | None) -> list[str]:
        front = cost_quality_front(dataset)
        lo, hi = float(np.nanmin(dataset.mean_cost())), float(np.nanmax(dataset.mean_cost()))
        best, best_aiq = [dataset.candidates[front[-1]]], -np.inf
        folds = np.random.default_rng(self.seed).permutation(len(dataset)) % max(2, self.n_folds)
        for size in range(1, min(self.max_chain, len(front))):
            for head in itertools.combinations(front[:-1], size):
                self.order_ = [dataset.candidates[j] for j in (*head, front[-1])]
                scores = np.zeros((len(dataset), len(self.order_) - 1))
                for fold in np.unique(folds):
                    judge = self._train_judge(dataset, features, np.flatnonzero(folds != fold))
                    held = np.flatnonzero(folds == fold)
                    scores[held] = self.step_scores(dataset.subset(held), None if features is None else
                                                    features[held], judge)
                points = replay_chain(dataset, [*head, front[-1]], scores)
                value = aiq(points.cost, points.quality, (lo, hi))
                if value > best_aiq + 1e-9:
                    best, best_aiq = list(self.order_), value
        self.order_aiq_ = best_aiq
        return best

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        # Before any answer a cascade knows only each candidate's mean training quality.
        return np.broadcast_to(self.prior_, (self._n_rows(X), len(self.candidates_))).copy()

    def route_indices(self, X: RouterInput, lam: float | None = None, budget: Any = None) -> np.ndarray:
        raise InvalidInputError(
            f"{type(self).__name__} decides after generation and pays for every model it calls, so a λ sweep of "
            "one chosen candidate per query would misstate its cost: use invoke() on live models, or "
            "operating_points(test) / cost_quality_points(test) on a dataset with responses")

    def score(self, X: RouterInput, strong: str | None = None, weak: str | None = None) -> np.ndarray:
        """RouteLLM score for two candidates: 1 - the judge's trust in the weak model's recorded answer."""
        self._check_fitted()
        if not isinstance(X, RoutingDataset) or X.responses is None:
            return super().score(X, strong, weak)
        weak = weak or self.order_[0]
        return 1.0 - self.judge_scores(X, list(range(len(X))), weak, [[]] * len(X),
                                       self.features(X) if self.uses_features else None)

    #: The judge class a saved cascade holds (its ``get_state`` / ``from_state`` persist the trained judge).
    saved_judge: ClassVar[type] = AnswerScorerJudge

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        judge = self._fitted_judge()
        if not isinstance(judge, self.saved_judge):
            raise InvalidInputError(f"only a {self.name} with a trained {self.saved_judge.__name__} can be saved")
        meta, arrays = judge.get_state()
        calibration = {}
        for name, cal in getattr(self, "judge_calibration_", {}).items():
            c_meta, c_arrays = cal.get_state()
            calibration[name] = c_meta
            arrays = {**arrays, **{f"calibration.{name}.{k}": v for k, v in c_arrays.items()}}
        return ({"order": self.order_, "judge": meta, "calibration": calibration},
                {"prior": self.prior_, **{f"judge.{k}": v for k, v in arrays.items()}})

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.order_ = [str(c) for c in config["order"]]
        self.prior_ = np.asarray(arrays["prior"], dtype=np.float64)
        judge_arrays = {k[len("judge."):]: v for k, v in arrays.items() if k.startswith("judge.")}
        calibration = {k: v for k, v in judge_arrays.items() if k.startswith("calibration.")}
        judge_arrays = {k: v for k, v in judge_arrays.items() if not k.startswith("calibration.")}
        self.judge_ = self.saved_judge.from_state(config["judge"], judge_arrays)
        self.judge_calibration_ = {
            name: JudgeCalibration.from_state(c_meta, {k.rsplit(".", 1)[1]: v for k, v in calibration.items()
                                                       if k.rsplit(".", 1)[0] == f"calibration.{name}"})
            for name, c_meta in config.get("calibration", {}).items()}
        if self.uses_features and getattr(self.judge_, "featurizer_", None) is not None:
            self.judge_.featurizer_ = self.featurizer_



def _clients(candidates: Sequence[Any]) -> dict[str, LLMClient]:
    clients: dict[str, LLMClient] = {}
    for item in candidates:
        if isinstance(item, Candidate):
            name, llm, pricing, model = item.name, item.target, item.pricing, item.model
        elif isinstance(item, tuple) and len(item) in (2, 3):
            name, llm, pricing, model = item[0], item[1], item[2] if len(item) == 3 else None, None
        else:
            raise InvalidInputError("candidates are (name, llm), (name, llm, Pricing) or Candidate(target=llm)")
        if pricing is not None and not isinstance(pricing, Pricing):
            raise InvalidInputError(f"the pricing of {name!r} must be a Pricing, got {type(pricing).__name__}")
        if name in clients:
            raise UnknownCandidateError(f"candidate {name!r} appears twice")
        clients[str(name)] = LLMClient(llm, model=model, pricing=pricing, stage=GENERATION, component=str(name))
    if not clients:
        raise InvalidInputError("a cascade needs at least one candidate")
    return clients


def _judge_cost(ledger: CostLedger | None, before: int, decision_id: str) -> float:
    if ledger is None:
        return 0.0
    return float(sum(e.cost_usd for e in ledger.entries[before:] if e.stage == "judge"
                     and e.decision_id == decision_id))




__all__ = ["CascadeRouter", "CascadeResult", "Attempt", "cost_quality_front", "replay_chain"]
