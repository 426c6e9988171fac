"""`VoteCascade`: cheap models answer in turn and stop as soon as their weighted vote agrees; else the strong one.

M. Yue et al. (2024), "Large Language Model Cascades with Mixture of Thought Representations for Cost-Efficient
Reasoning", use answer consistency to decide escalation; across *different* cheap models this is the vote
variant. A :class:`~rag_routing.routers.cascade.CascadeRouter` whose judge is an
:class:`~rag_routing.routers.judges.AgreementJudge`: each voter's answer is scored by its reliability-weighted
agreement with the answers already obtained (the first answer alone is never trusted), and the last candidate
(the strong model) answers when the voters do not agree. Estimates nothing before the call; pays every model it
calls; the judge itself costs $0.

**Offline** (``fit`` on a :class:`RoutingDataset` with ``responses``): the final model is the best on the
training set; the voters are chosen among the candidates costing at most ``max_voter_cost`` times the final
one (2 to ``max_voters`` of them, called cheapest first), by cross-validated AIQ of the replayed chain on the
training set only (each fold's reliabilities are learned without it); the judge then learns every candidate's
reliability on the whole training set. :meth:`operating_points` sweeps the acceptance threshold on a test set;
:meth:`calibrate` sets it to a budget or an escalation rate.

**Online** (``invoke`` / ``ainvoke``): as the cascade — every call recorded in the ledger under the cascade's
``decision_id``, a step the budget cannot afford refused *before* the call.

Example (offline):
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> rng = np.random.default_rng(0)
    >>> right = rng.random((300, 4)) < [0.7, 0.7, 0.75, 0.95]
    >>> answers = [["A" if r else "BCD"[rng.integers(3)] for r in row] for row in right]
    >>> ds = RoutingDataset([f"q{i}" for i in range(300)], ["a", "b", "c", "strong"], right.astype(float),
    ...                     np.tile([0.001, 0.0012, 0.0015, 0.02], (300, 1)), responses=answers)
    >>> cascade = VoteCascade(max_voters=2).fit(ds)
    >>> cascade.order_[-1], len(cascade.order_)
    ('strong', 3)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.metrics import aiq
from rag_routing.routers.cascade import CascadeRouter
from rag_routing.routers.cascade_replay import replay_chain
from rag_routing.routers.judges import AgreementJudge, Judge
from rag_routing.routers.judges.agreement import weighted_agreement


class VoteCascade(CascadeRouter):
    """Cheap voters in turn, stop when their weighted vote agrees, else the strong model (Yue et al. 2024, vote
    variant). See the module docstring.

    Args:
        candidates: online models: the voters cheapest first, the strong model last (as :class:`CascadeRouter`).
        judge: an :class:`AgreementJudge` (a template copied and fitted by :meth:`fit`; default
            ``AgreementJudge()``).
        threshold: accept a voter's answer at or above this judge score (default: the judge's ``threshold``).
        order: voters then the final model, by name; skips the offline search.
        final: the model that answers when the voters disagree (offline default: the best training quality).
        max_voters: most voters in the searched chains (at least 2).
        max_voter_cost: voters cost at most this share of the final model's mean training cost.
        budget, fallback, max_tokens, system_prompt, n_folds, seed: as :class:`CascadeRouter`.
    """

    name = "vote_cascade"
    #: Reads answers, not the query text: no featurizer is fitted.
    uses_features = False
    #: Needs response texts (RouterBench); name it explicitly in `rag-routing bench --routers`.
    in_bench_all = False
    saved_judge = AgreementJudge

    def __init__(self, candidates: Sequence[Any] | None = None, *, judge: AgreementJudge | None = None,
                 threshold: float | None = None, order: Sequence[str] | None = None, final: str | None = None,
                 max_voters: int = 4, max_voter_cost: float = 0.25, lam: float = 0.0, budget: float | None = None,
                 fallback: str | None = None, featurizer: Any = None, max_tokens: int = 256,
                 system_prompt: str | None = None, n_folds: int = 3, seed: int = 0):
        if judge is not None and not isinstance(judge, AgreementJudge):
            raise InvalidInputError(f"a VoteCascade judges by agreement and needs an AgreementJudge, got "
                                    f"{type(judge).__name__}; for another judge use CascadeRouter(order=...)")
        if isinstance(max_voters, bool) or not isinstance(max_voters, int) or max_voters < 2:
            raise InvalidInputError(f"max_voters must be an integer >= 2, got {max_voters!r}")
        if not isinstance(max_voter_cost, (int, float)) or not 0 < max_voter_cost <= 1:
            raise InvalidInputError(f"max_voter_cost must be in (0, 1], got {max_voter_cost!r}")
        super().__init__(candidates, judge=judge or AgreementJudge(), threshold=threshold, order=order, lam=lam,
                         budget=budget, fallback=fallback, featurizer=featurizer, max_tokens=max_tokens,
                         system_prompt=system_prompt, n_folds=n_folds, seed=seed)
        if self.order is not None and len(self.order) < 3:
            raise InvalidInputError(f"a vote cascade needs at least two voters and a final model; order={order!r}")
        self.final, self.max_voters, self.max_voter_cost = final, max_voters, float(max_voter_cost)

    def get_params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "order": self.order, "final": self.final,
                "max_voters": self.max_voters, "max_voter_cost": self.max_voter_cost, "lam": self.lam,
                "budget": self.budget, "fallback": self.fallback, "max_tokens": self.max_tokens,
                "n_folds": self.n_folds, "seed": self.seed}

    # ------------------------------------------------------------------ offline
    def _new_judge(self) -> AgreementJudge:
        j = self.judge
        assert isinstance(j, AgreementJudge)
        return AgreementJudge(reliability=j.reliability, default_reliability=j.default_reliability, mode=j.mode,
                              answer_pattern=j.answer_pattern, min_answers=j.min_answers,
                              prior_strength=j.prior_strength, threshold=j.threshold)

    def _train_judge(self, dataset: RoutingDataset, features: np.ndarray | None, rows: np.ndarray) -> Judge:
        """A fresh judge whose reliabilities are learned from every candidate's outcomes on ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        responses = dataset.responses or []
        names = np.repeat(np.asarray(dataset.candidates, dtype=object)[None, :], rows.size, axis=0)
        answers = [responses[i][j] for i in rows for j in range(dataset.n_candidates)]
        return self._new_judge().fit(names.ravel().tolist(), dataset.quality[rows].ravel(), answers)

    def final_candidate(self, dataset: RoutingDataset) -> int:
        """Index of the model that answers when the voters disagree: ``final``, else the best training quality
        (ties: the cheaper)."""
        if self.final is not None:
            return dataset.candidate_index(self.final)
        quality = np.nan_to_num(dataset.mean_quality(), nan=0.0)
        return int(np.lexsort((dataset.mean_cost(), -quality))[0])

    def voter_candidates(self, dataset: RoutingDataset) -> list[int]:
        """Indices of the candidates cheap enough to vote, cheapest first."""
        cost, final = dataset.mean_cost(), self.final_candidate(dataset)
        cheap = [j for j in range(dataset.n_candidates) if j != final and cost[j] <= self.max_voter_cost * cost[final]]
        return sorted(cheap, key=lambda j: (cost[j], j))

    def _choose_order(self, dataset: RoutingDataset, features: np.ndarray | None) -> list[str]:
        final, voters = self.final_candidate(dataset), self.voter_candidates(dataset)
        if len(voters) < 2:
            raise InvalidInputError(f"a vote cascade needs at least two candidates costing <= {self.max_voter_cost:g}"
                                    f" x the final model {dataset.candidates[final]!r}; found {len(voters)}: raise "
                                    "max_voter_cost or pass order=[...]")
        template = self._train_judge(dataset, None, np.arange(len(dataset)))
        assert isinstance(template, AgreementJudge)
        keys = np.array([[template.key(answer) for answer in row] for row in dataset.responses or []], dtype=str)
        folds = np.random.default_rng(self.seed).permutation(len(dataset)) % max(2, self.n_folds)
        weights = np.zeros((len(dataset), dataset.n_candidates))
        for fold in np.unique(folds):
            judge = self._train_judge(dataset, None, np.flatnonzero(folds != fold))
            weights[folds == fold] = judge.weights(dataset.candidates)
        lo, hi = float(np.nanmin(dataset.mean_cost())), float(np.nanmax(dataset.mean_cost()))
        best, best_aiq = None, -np.inf
        for size in range(2, min(self.max_voters, len(voters)) + 1):
            for head in itertools.combinations(voters, size):
                chain = [*head, final]
                scores = np.stack([weighted_agreement(keys[:, j], weights[:, j], keys[:, chain[:k]],
                                                      weights[:, chain[:k]], template.min_answers)
                                   for k, j in enumerate(chain[:-1])], axis=1)
                points = replay_chain(dataset, chain, scores)
                value = aiq(points.cost, points.quality, (lo, hi))
                if value > best_aiq + 1e-9:
                    best, best_aiq = chain, value
        assert best is not None
        self.order_aiq_ = best_aiq
        return [dataset.candidates[j] for j in best]


__all__ = ["VoteCascade"]
