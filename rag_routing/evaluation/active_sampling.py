"""Which (query, candidate) pairs to label next: active sampling for routing data (survey §5.2.3).

Labelling a routing table costs one candidate call (plus a judge) per cell, so cells are not worth the same:
a cell of a model that no λ would ever pick, or one whose outcome the neighbours already tell, teaches a
router little. Every sampler answers ``next_batch(dataset, n) -> [(query_index, candidate_index), ...]``: up to
``n`` *unlabelled* cells (NaN quality), best first, deterministic for a seed and a labelled table.

* :class:`RandomSampler` — uniformly at random (the baseline).
* :class:`UncertaintySampler` — the cells whose quality is least certain (posterior standard deviation).
* :class:`DecisionValueSampler` — the expected value of information of a cell for the shared decision rule
  ``argmax_M S - λ·C`` (:mod:`rag_routing.decision`), averaged over a λ grid: for each λ, with ``b`` the best
  utility of the *other* candidates and ``d = μ - λc - b`` the cell's margin, learning a quality
  ``~ N(μ, σ²)`` is worth ``E[max(X, b)] - max(E[X], b) = σ·ψ(-|d|/σ)``, ``ψ(u) = uΦ(u) + φ(u)`` (the
  expected value of perfect information; Howard 1966; the knowledge gradient of Frazier et al. 2008). Cells
  near the decision boundary of some λ score high; a candidate dominated at every λ scores ~0, however
  uncertain. With ``cost_power=1`` the value is per US $ of the label (the candidate's mean call price plus
  ``label_overhead_usd``, e.g. the judge), so cheap labels of equal value go first.

Candidates with fewer than ``min_per_candidate`` labels first get random cells, and the rest of that batch is
random too (a posterior needs a start).
The posterior is a :class:`~rag_routing.evaluation.quality_posterior.QualityPosterior` (default
:class:`~rag_routing.evaluation.quality_posterior.NeighbourPosterior`).

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> E = np.repeat(np.eye(2, dtype=np.float32), 4, axis=0)
    >>> Q = np.full((8, 2), np.nan); Q[[0, 4], 0] = [1, 0]; Q[[0, 4], 1] = [1, 1]
    >>> ds = RoutingDataset([f"q{i}" for i in range(8)], ["small", "large"], Q,
    ...                     np.tile([0.001, 0.01], (8, 1))).with_embeddings(E, "toy")
    >>> batch = DecisionValueSampler(seed=0).next_batch(ds, 3)
    >>> len(batch), all(np.isnan(ds.quality[i, j]) for i, j in batch)
    (3, True)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.quality_posterior import NeighbourPosterior, QualityPosterior

Cell = tuple[int, int]


def _check_count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def candidate_costs(dataset: RoutingDataset) -> np.ndarray:
    """Each candidate's mean known US $ per call; a candidate without a known cost gets the mean of the others
    (0 when no cost is known at all)."""
    mean = dataset.mean_cost()
    fill = float(np.nanmean(mean)) if not np.isnan(mean).all() else 0.0
    return np.where(np.isnan(mean), fill, mean)


class ActiveSampler(ABC):
    """Chooses unlabelled cells to label next (see module docstring).

    Args:
        seed: ties and the cold start are broken at random with this seed (and the number of labels so far).
        min_per_candidate: candidates with fewer labels get random cells first.
        explore: share of each batch drawn at random among the other unlabelled cells (keeps a sampler from
            never looking again at a candidate an unlucky start made look hopeless).
    """

    name: ClassVar[str] = "sampler"

    def __init__(self, *, seed: int = 0, min_per_candidate: int = 2, explore: float = 0.0):
        self.seed = _check_count("seed", seed, 0)
        self.min_per_candidate = _check_count("min_per_candidate", min_per_candidate, 0)
        if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not 0.0 <= explore <= 1.0:
            raise InvalidInputError(f"explore must be a share in [0, 1], got {explore!r}")
        self.explore = float(explore)

    def next_batch(self, dataset: RoutingDataset, n: int, *, exclude: np.ndarray | None = None) -> list[Cell]:
        """Up to ``n`` unlabelled cells, best first.

        Args:
            dataset: the table so far (NaN quality = not labelled).
            n: how many cells.
            exclude: ``(n_queries, n_candidates)`` boolean mask of cells never to pick (calls that failed, cells
                with no ground truth).
        """
        if not isinstance(dataset, RoutingDataset):
            raise InvalidInputError(f"next_batch expects a RoutingDataset, got {type(dataset).__name__}")
        n = _check_count("n", n, 1)
        shape = dataset.quality.shape
        open_cells = np.isnan(dataset.quality)
        if exclude is not None:
            exclude = np.asarray(exclude)
            if exclude.shape != shape or exclude.dtype != bool:
                raise InvalidInputError(f"exclude must be a boolean mask of shape {shape}")
            open_cells &= ~exclude
        if not open_cells.any():
            return []
        rng = np.random.default_rng([self.seed, int((~np.isnan(dataset.quality)).sum())])
        chosen = self._cold_start(dataset, open_cells, n, rng)
        if len(chosen) < n:
            remaining = open_cells.copy()
            for i, j in chosen:
                remaining[i, j] = False
            if remaining.any():
                # A cold-start batch is filled at random: the posterior has nothing to stand on yet.
                priority = (np.zeros(shape) if chosen else np.asarray(self.priority(dataset), dtype=np.float64))
                n_random = int(round(self.explore * (n - len(chosen)))) if not chosen else 0
                best = _top(priority, remaining, n - len(chosen) - n_random, rng)
                chosen += best
                if n_random:
                    for i, j in best:
                        remaining[i, j] = False
                    chosen += _top(np.zeros(shape), remaining, n_random, rng)
        return chosen

    def _cold_start(self, dataset: RoutingDataset, open_cells: np.ndarray, n: int,
                    rng: np.random.Generator) -> list[Cell]:
        labelled = (~np.isnan(dataset.quality)).sum(axis=0)
        chosen: list[Cell] = []
        for j in np.flatnonzero(labelled < self.min_per_candidate):  # a loop over candidates, not the pool
            rows = np.flatnonzero(open_cells[:, j])
            take = min(self.min_per_candidate - int(labelled[j]), len(rows), n - len(chosen))
            chosen += [(int(i), int(j)) for i in rng.choice(rows, size=take, replace=False)]
        return chosen

    @abstractmethod
    def priority(self, dataset: RoutingDataset) -> np.ndarray:
        """``(n_queries, n_candidates)`` value of labelling each cell (higher first; labelled cells ignored)."""


def _top(priority: np.ndarray, allowed: np.ndarray, n: int, rng: np.random.Generator) -> list[Cell]:
    if priority.shape != allowed.shape or not np.isfinite(priority[allowed]).all():
        raise RuntimeError(f"sampler priority must be finite with shape {allowed.shape}")
    flat = np.flatnonzero(allowed)
    order = np.lexsort((rng.random(len(flat)), -priority.ravel()[flat]))[:n]  # ties: at random
    rows, cols = np.unravel_index(flat[order], allowed.shape)
    return [(int(i), int(j)) for i, j in zip(rows, cols)]


class RandomSampler(ActiveSampler):
    """Unlabelled cells uniformly at random (the baseline every active sampler must beat)."""

    name = "random"

    def priority(self, dataset: RoutingDataset) -> np.ndarray:
        return np.zeros(dataset.quality.shape)


class _PosteriorSampler(ActiveSampler):
    def __init__(self, posterior: QualityPosterior | None = None, *, cost_power: float = 0.0,
                 label_overhead_usd: float = 0.0, explore: float = 0.0, seed: int = 0, min_per_candidate: int = 2):
        super().__init__(seed=seed, min_per_candidate=min_per_candidate, explore=explore)
        if not (np.isfinite(cost_power) and cost_power >= 0 and np.isfinite(label_overhead_usd)
                and label_overhead_usd >= 0):
            raise InvalidInputError("cost_power and label_overhead_usd must be finite and >= 0")
        self.posterior = posterior if posterior is not None else NeighbourPosterior()
        self.cost_power, self.label_overhead_usd = float(cost_power), float(label_overhead_usd)

    def per_dollar(self, value: np.ndarray, dataset: RoutingDataset) -> np.ndarray:
        """``value`` divided by ``label price ** cost_power`` (unchanged when ``cost_power`` is 0)."""
        if self.cost_power == 0:
            return value
        price = candidate_costs(dataset) + self.label_overhead_usd
        price = np.maximum(price, max(float(price.max()), 1e-12) * 1e-6)  # a free candidate is not infinitely good
        return value / price[None, :] ** self.cost_power


class UncertaintySampler(_PosteriorSampler):
    """The cells with the largest posterior standard deviation of quality (optionally per US $).

    Args:
        posterior: the quality posterior (default :class:`NeighbourPosterior`).
        cost_power: 0 ranks by uncertainty alone; 1 by uncertainty per US $ of the label.
        label_overhead_usd: US $ added to every label's price (the judge's call).
        explore, seed, min_per_candidate: see :class:`ActiveSampler`.
    """

    name = "uncertainty"

    def priority(self, dataset: RoutingDataset) -> np.ndarray:
        _, std = self.posterior.estimate(dataset)
        return self.per_dollar(std, dataset)


def decision_value(mean: np.ndarray, std: np.ndarray, cost: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """Each cell's expected value of perfect information for ``argmax S - λC``, averaged over ``lams``.

    Args:
        mean, std: ``(n, m)`` posterior of the quality.
        cost: ``(m,)`` or ``(n, m)`` expected US $ per call.
        lams: ``(L,)`` λ values (at least one).

    Example:
        >>> import numpy as np
        >>> mean = np.array([[0.50, 0.52, 0.10]]); std = np.full((1, 3), 0.1)
        >>> v = decision_value(mean, std, np.array([1.0, 1.0, 1.0]), np.array([0.0]))
        >>> bool(v[0, 0] > v[0, 2]), bool(v[0, 1] > v[0, 2])     # the far-behind third barely matters
        (True, True)
    """
    from scipy.special import ndtr

    C = np.broadcast_to(np.asarray(cost, dtype=np.float64), mean.shape)
    lams = np.asarray(lams, dtype=np.float64).ravel()
    if lams.size == 0:
        raise InvalidInputError("decision_value needs at least one λ")
    if mean.shape[1] == 1:  # one candidate: nothing to decide
        return np.zeros(mean.shape)
    sigma = np.maximum(std, 0.0)
    value = np.zeros(mean.shape)
    for lam in lams:  # a loop over λ values (tens), each a whole-table operation
        U = mean - lam * C
        top2 = -np.partition(-U, 1, axis=1)[:, :2]
        others = np.where(U >= top2[:, :1], top2[:, 1:2], top2[:, :1])  # best utility of the other candidates
        u = -np.abs(U - others) / np.where(sigma > 0, sigma, 1.0)
        psi = u * ndtr(u) + np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)
        value += np.where(sigma > 0, sigma * psi, 0.0)
    return value / lams.size


class DecisionValueSampler(_PosteriorSampler):
    """The cells whose label is worth most to the routing decision over a λ range (see module docstring).

    Args:
        posterior: the quality posterior (default :class:`NeighbourPosterior`).
        lams: the λ values (quality per US $) to average over; ``None``: ``n_lambdas`` log-spaced values from
            :func:`~rag_routing.evaluation.sweep.lambda_grid` on the current estimates (the λ range of a
            benchmark sweep), plus λ = 0.
        n_lambdas: grid size when ``lams`` is ``None``. Every λ weighs the same.
        cost_power, label_overhead_usd: rank by value per US $ of the label (see :class:`UncertaintySampler`).
        explore, seed, min_per_candidate: see :class:`ActiveSampler`.
    """

    name = "decision_value"

    def __init__(self, posterior: QualityPosterior | None = None, *, lams: np.ndarray | None = None,
                 n_lambdas: int = 24, cost_power: float = 0.0, label_overhead_usd: float = 0.0,
                 explore: float = 0.0, seed: int = 0, min_per_candidate: int = 2):
        super().__init__(posterior, cost_power=cost_power, label_overhead_usd=label_overhead_usd, explore=explore,
                         seed=seed, min_per_candidate=min_per_candidate)
        self.n_lambdas = _check_count("n_lambdas", n_lambdas, 1)
        self.lams = None if lams is None else np.asarray(lams, dtype=np.float64).ravel()
        if self.lams is not None and (self.lams.size == 0 or not np.isfinite(self.lams).all() or (self.lams < 0).any()):
            raise InvalidInputError("lams must be a non-empty list of finite λ values >= 0")

    def priority(self, dataset: RoutingDataset) -> np.ndarray:
        from rag_routing.evaluation.sweep import lambda_grid

        mean, std = self.posterior.estimate(dataset)
        cost = candidate_costs(dataset)
        lams = self.lams if self.lams is not None else lambda_grid(mean, np.broadcast_to(cost, mean.shape),
                                                                   self.n_lambdas)
        return self.per_dollar(decision_value(mean, std, cost, lams), dataset)


#: Short names for :func:`make_sampler` and ``rag-routing label --sampler``.
SAMPLERS: dict[str, type[ActiveSampler]] = {
    "random": RandomSampler, "uncertainty": UncertaintySampler, "decision_value": DecisionValueSampler}


def make_sampler(name: str, **kwargs: object) -> ActiveSampler:
    """The sampler registered as ``name`` (one of :data:`SAMPLERS`)."""
    if name not in SAMPLERS:
        raise InvalidInputError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**kwargs)  # type: ignore[arg-type]


__all__ = ["ActiveSampler", "RandomSampler", "UncertaintySampler", "DecisionValueSampler", "decision_value",
           "candidate_costs", "make_sampler", "SAMPLERS", "Cell"]
