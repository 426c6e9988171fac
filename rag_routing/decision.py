"""The one decision rule every router shares (the survey's Eq. 1 and Eq. 2).

For each query ``q`` pick ``argmax_M S[q, M] - λ·C[q, M]`` subject to ``C[q, M] <= B``. Ties (within
``tie_tol``) go to the cheaper candidate, then to the lower index. Rows where no candidate fits the budget
raise :class:`~rag_routing.errors.NoRouteError` unless a fallback is declared.

Example:
    >>> import numpy as np
    >>> S = np.array([[0.70, 0.90], [0.80, 0.80]])
    >>> C = np.array([[0.001, 0.030], [0.001, 0.030]])
    >>> select(S, C, lam=0.0).tolist()         # quality only; the tie in row 2 goes to the cheaper one
    [1, 0]
    >>> select(S, C, lam=10.0).tolist()        # 0.9 - 0.3 < 0.7 - 0.01
    [0, 0]
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_routing.errors import BudgetExceededError, InvalidInputError, NoRouteError, UnknownCandidateError
from rag_routing.validation import check_float, check_int

ArrayLike = Any


def _as_matrix(values: ArrayLike, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what} must be a rectangular array of numbers ({exc})") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidInputError(f"{what} must be a 2-D array (n_queries, n_candidates); got shape {array.shape}")
    return array


def _validate(quality: ArrayLike, cost: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    S = _as_matrix(quality, "quality")
    C = _as_matrix(cost, "cost")
    if C.shape[0] == 1 and S.shape[0] > 1 and C.shape[1] == S.shape[1]:
        C = np.broadcast_to(C, S.shape)
    if S.shape != C.shape:
        raise InvalidInputError(f"quality {S.shape} and cost {C.shape} must have the same shape")
    if not np.isfinite(S).all():
        rows = np.flatnonzero(~np.isfinite(S).all(axis=1))[:5].tolist()
        raise InvalidInputError(
            f"quality has NaN or infinite values (rows {rows}...); impute unknown qualities before routing"
        )
    if not np.isfinite(C).all() or (C < 0).any():
        raise InvalidInputError("cost must be finite and >= 0; check the price table or the cost model")
    return S, C


def _resolve_fallback(fallback: int | str | None, n_candidates: int, candidates: Sequence[str] | None) -> int | None:
    if fallback is None:
        return None
    if isinstance(fallback, str):
        if candidates is None or fallback not in candidates:
            raise UnknownCandidateError(f"fallback {fallback!r} is not a candidate; candidates: {candidates}")
        return list(candidates).index(fallback)
    index = int(fallback)
    if not 0 <= index < n_candidates:
        raise UnknownCandidateError(f"fallback index {index} out of range for {n_candidates} candidates")
    return index


def _budget_column(budget: ArrayLike, n_rows: int) -> np.ndarray:
    """A scalar or per-row budget as an ``(n, 1)`` (or scalar) array; any other shape is an error."""
    try:
        B = np.asarray(budget, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"budget must be a number or one number per query ({exc})") from None
    if B.shape not in ((), (n_rows,), (n_rows, 1)):
        raise InvalidInputError(f"budget has shape {B.shape}; expected a scalar or ({n_rows},) for {n_rows} queries")
    return B.reshape(n_rows, 1) if B.ndim else B


def utilities(quality: ArrayLike, cost: ArrayLike, lam: float = 0.0, budget: ArrayLike | None = None) -> np.ndarray:
    """``S - λ·C`` with ``-inf`` where a candidate's cost exceeds the budget."""
    S, C = _validate(quality, cost)
    numeric = isinstance(lam, (int, float, np.integer, np.floating)) and not isinstance(lam, bool)
    if not numeric or lam < 0 or not np.isfinite(lam):
        raise InvalidInputError(f"lam must be a finite number >= 0, got {lam!r}")
    U = S - lam * C
    if budget is not None:
        B = _budget_column(budget, S.shape[0])
        if np.isnan(B).any() or (B < 0).any():
            raise InvalidInputError("budget must be >= 0 (use None for no budget)")
        U = np.where(C <= B, U, -np.inf)
    return U


def select(
    quality: ArrayLike,
    cost: ArrayLike,
    lam: float = 0.0,
    budget: ArrayLike | None = None,
    fallback: int | str | None = None,
    candidates: Sequence[str] | None = None,
    tie_tol: float = 1e-12,
) -> np.ndarray:
    """Index of the chosen candidate for every row: ``argmax S - λC`` s.t. ``C <= B``.

    Parameters:
        quality: ``(n, m)`` predicted quality (higher is better). A 1-D array is one query.
        cost: ``(n, m)`` predicted cost in US $ (or ``(m,)`` / ``(1, m)`` shared by all rows).
        lam: price of one dollar in quality units (λ >= 0).
        budget: scalar or per-row ``(n,)`` maximum cost; ``None`` for no budget.
        fallback: candidate index or name used for rows with no feasible candidate; without it those
            rows raise :class:`NoRouteError`.
        candidates: names, needed only when ``fallback`` is a name.
        tie_tol: utilities within this distance of the best count as tied; ties go to the cheaper one.

    Returns:
        ``(n,)`` int array of chosen candidate indices.
    """
    S, C = _validate(quality, cost)
    U = utilities(S, C, lam, budget)
    fallback_index = _resolve_fallback(fallback, S.shape[1], candidates)
    best = U.max(axis=1)
    infeasible = ~np.isfinite(best)
    tied = U >= (best - tie_tol)[:, None]
    chosen = np.where(tied, C, np.inf).argmin(axis=1)
    if infeasible.any():
        if fallback_index is None:
            rows = np.flatnonzero(infeasible)
            raise NoRouteError(
                f"{rows.size} queries have no candidate within the budget (rows {rows[:5].tolist()}...); "
                "raise the budget or declare a fallback"
            )
        chosen[infeasible] = fallback_index
    return chosen


@dataclass
class RoutingDecision:
    """What a router chose for one query, and why.

    Attributes:
        candidate: chosen candidate name.
        index: its position in the pool.
        quality: predicted quality per candidate name.
        cost: predicted cost (US $) per candidate name.
        lam: λ used.
        budget: budget used (US $), if any.
        reason: a sentence a person can read.
        router: the router's short name.
        router_cost_usd: what making the decision cost (embedding, an LLM-as-router call, ...).
        fallback: True when no candidate fitted the budget and the declared fallback was taken.
        decision_id: unique id; the ledger and feedback (``update``) refer to it.
    """

    candidate: str
    index: int
    quality: dict[str, float]
    cost: dict[str, float]
    lam: float
    budget: float | None
    reason: str
    router: str = ""
    router_cost_usd: float = 0.0
    fallback: bool = False
    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "candidate": self.candidate,
            "index": self.index,
            "quality": self.quality,
            "cost": self.cost,
            "lam": self.lam,
            "budget": self.budget,
            "reason": self.reason,
            "router": self.router,
            "router_cost_usd": self.router_cost_usd,
            "fallback": self.fallback,
            "metadata": self.metadata,
        }


_REQUEST: contextvars.ContextVar[tuple[float | None, float | None]] = contextvars.ContextVar(
    "rag_routing_request_routing", default=(None, None))


@contextmanager
def request_routing(lam: float | None = None, budget: float | None = None) -> Iterator[None]:
    """Per-request λ and $ budget for every router deciding inside the block (threads/tasks that copy the
    context included); how ``RunnableConfig(configurable={"lam": ..., "budget": ...})`` reaches the routers.

    Example:
        >>> with request_routing(lam=10.0):
        ...     decide([[0.7, 0.9]], [[0.001, 0.03]], ["small", "large"], lam=0.0)[0].candidate
        'small'
    """
    for name, value in (("lam", lam), ("budget", budget)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < float("inf")):
            raise InvalidInputError(f"per-request {name} must be a finite number >= 0 or None, got {value!r}")
    token = _REQUEST.set((None if lam is None else float(lam), None if budget is None else float(budget)))
    try:
        yield
    finally:
        _REQUEST.reset(token)


def _request_lam_budget(lam: float, budget: ArrayLike | None) -> tuple[float, ArrayLike | None, str]:
    """λ and B after per-request options and the ambient budget's remainder, with a note for the reason."""
    from rag_routing.ledger.scope import budget_left_usd  # the ledger sits beside this module, not above it

    request_lam, request_budget = _REQUEST.get()
    lam = lam if request_lam is None else request_lam
    budget = budget if request_budget is None else request_budget
    left = budget_left_usd()
    if left is None or (budget is not None and np.all(np.asarray(budget, dtype=float) <= left)):
        return lam, budget, ""
    capped = left if budget is None else np.minimum(np.asarray(budget, dtype=float), left)
    return lam, capped, f"; B = ${left:.6g}, what the ambient budget has left"


def _budget_note_amount(note: str) -> str:
    """The "$x" of a :func:`_request_lam_budget` note."""
    return note.split("B = ", 1)[-1].split(",", 1)[0]


def decide(
    quality: ArrayLike,
    cost: ArrayLike,
    candidates: Sequence[str],
    lam: float = 0.0,
    budget: ArrayLike | None = None,
    fallback: int | str | None = None,
    router: str = "",
    router_cost_usd: float | Sequence[float] = 0.0,
) -> list[RoutingDecision]:
    """Like :func:`select` but returns an explained :class:`RoutingDecision` per row.

    Per-request λ and budget (:func:`request_routing`) replace ``lam`` / ``budget``; inside a
    ``ledger_scope`` whose ledger has a $ budget, B is capped at what that budget has left (the reason says so).
    """
    lam, budget, note = _request_lam_budget(lam, budget)
    S, C = _validate(quality, cost)
    C = np.array(C)
    names = list(candidates)
    if len(names) != S.shape[1]:
        raise InvalidInputError(f"{len(names)} candidate names for {S.shape[1]} columns")
    try:
        chosen = select(S, C, lam, budget, fallback, names)
    except NoRouteError as exc:
        if not note:
            raise
        raise BudgetExceededError(  # what is left of the ambient budget pays for no candidate: refuse now
            f"no candidate fits the {_budget_note_amount(note)} the ambient budget has left; raise the budget, "
            f"declare a fallback or add a cheaper candidate") from exc
    U = utilities(S, C, lam, budget)
    budgets = None if budget is None else np.broadcast_to(_budget_column(budget, S.shape[0]), (S.shape[0], 1))[:, 0]
    own_costs = np.broadcast_to(np.asarray(router_cost_usd, dtype=float), (S.shape[0],))
    decisions = []
    for row, j in enumerate(chosen.tolist()):
        feasible = np.isfinite(U[row])
        is_fallback = not feasible.any()
        if is_fallback:
            reason = f"no candidate within budget {budgets[row]:.6g} $; declared fallback {names[j]!r}"
        else:
            reason = (
                f"{names[j]!r} maximises quality - λ·cost = {S[row, j]:.4g} - {lam:.4g}·{C[row, j]:.4g}"
                f" among {int(feasible.sum())} feasible of {len(names)}"
            )
        reason += note
        decisions.append(
            RoutingDecision(
                candidate=names[j],
                index=j,
                quality=dict(zip(names, S[row].tolist())),
                cost=dict(zip(names, C[row].tolist())),
                lam=float(lam),
                budget=None if budgets is None else float(budgets[row]),
                reason=reason,
                router=router,
                router_cost_usd=float(own_costs[row]),
                fallback=is_fallback,
            )
        )
    return decisions


def expensive_share(
    quality: ArrayLike, cost: ArrayLike, lam: float, expensive: Sequence[int], budget: ArrayLike | None = None
) -> float:
    """Share of rows routed to the ``expensive`` candidate indices at ``lam``."""
    chosen = select(quality, cost, lam, budget, fallback=0)
    return float(np.isin(chosen, np.asarray(expensive)).mean())


def calibrate(
    quality: ArrayLike,
    cost: ArrayLike,
    target_share: float,
    expensive: Sequence[int] | None = None,
    budget: ArrayLike | None = None,
    tol: float = 1e-3,
    max_iter: int = 200,
) -> float:
    """The λ that sends ``target_share`` of the rows to the ``expensive`` candidates.

    RouteLLM calibrates one threshold for two models; this does the same for N candidates. The share routed
    to the expensive set never increases with λ, so a bisection on λ (in log space) finds the value whose
    share is closest to the target. ``expensive`` defaults to the candidate with the highest mean cost.

    Returns:
        λ >= 0. When even λ = 0 sends fewer rows than the target, 0.0 is returned.
    """
    S, C = _validate(quality, cost)
    if S.shape[0] == 0:
        raise InvalidInputError("cannot calibrate on zero rows; pass at least one query's quality and cost")
    target_share = check_float("target_share", target_share, 0.0, 1.0)
    tol = check_float("tol", tol)
    max_iter = check_int("max_iter", max_iter, low=0)
    if expensive is None:
        expensive = [int(np.argmax(C.mean(axis=0)))]
    if isinstance(expensive, (str, bytes)) or not isinstance(expensive, Iterable):
        raise InvalidInputError(f"expensive must be a list of candidate indices, got {type(expensive).__name__}")
    expensive = [check_int("expensive index", e, low=-(2**62)) for e in expensive]
    if any(not 0 <= e < S.shape[1] for e in expensive):
        raise UnknownCandidateError(f"expensive indices {expensive} out of range for {S.shape[1]} candidates")

    def share(lam: float) -> float:
        return expensive_share(S, C, lam, expensive, budget)

    if share(0.0) <= target_share:
        return 0.0
    # Upper end: a λ large enough that cost dominates every quality difference; grow it if needed.
    positive_gaps = np.diff(np.unique(C))
    min_gap = float(positive_gaps.min()) if positive_gaps.size else 1.0
    hi = (float(np.ptp(S)) + 1.0) / min_gap
    for _ in range(60):
        if share(hi) <= target_share:
            break
        hi *= 10.0
    lo = hi * 1e-15
    if share(lo) <= target_share:
        return float(lo)
    # Invariant: share(lo) > target >= share(hi). Geometric bisection keeps tiny and huge λ alike precise.
    best_lam, best_err = hi, abs(share(hi) - target_share)
    for _ in range(max_iter):
        mid = float(np.sqrt(lo * hi))
        s = share(mid)
        if abs(s - target_share) < best_err:
            best_lam, best_err = mid, abs(s - target_share)
        if best_err <= tol or hi / lo < 1.0 + 1e-12:
            break
        if s > target_share:
            lo = mid
        else:
            hi = mid
    return float(best_lam)


def calibrate_threshold(scores: ArrayLike, target_share: float) -> float:
    """Threshold on a 1-D router score so that ``target_share`` of the rows score strictly above it.

    The two-candidate case of RouteLLM: route to the strong model when ``score > threshold``.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise InvalidInputError("scores must be a non-empty array of finite numbers")
    if not 0.0 <= target_share <= 1.0:
        raise InvalidInputError(f"target_share must be in [0, 1], got {target_share}")
    return float(np.quantile(values, 1.0 - target_share))


__all__ = [
    "request_routing",
    "RoutingDecision",
    "select",
    "decide",
    "utilities",
    "calibrate",
    "calibrate_threshold",
    "expensive_share",
]
