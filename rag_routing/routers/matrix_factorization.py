"""Matrix-factorisation router (RouteLLM's ``mf``; EmbedLLM) and the small numpy Adam trainer it shares with
the MLP of :class:`~rag_routing.routers.supervised.QualityRegressor`.

Training runs in numpy (no torch): mini-batches over queries, every known outcome of a query in the same
batch, NaN outcomes masked out of the loss, Adam with L2 weight decay, early stopping on an inner validation
split of the training queries, everything seeded.

Fits that scale: ``mf`` also stops after ``max_steps`` gradient steps in all (default 6,000; ``None``: no
cap). Early stopping counts epochs, so its patience alone made the fit grow with the data (27,456 steps at
100,000 rows of the synthetic ``benchmarks/scaling.py`` data). The cap binds only on large sets: at 100,000 rows
(703 steps an epoch) it ends the fit in epoch 9, where that data's inner validation loss has reached the plateau
it then wanders in for 30 more epochs (0.6131 against a best of 0.6128). A set of up to 4,200 rows cannot reach
it (200 epochs of batches of 128), and larger ones that early-stop sooner (10,000 synthetic rows: 1,491 steps)
fit exactly as before. The Adam update runs in place on preallocated buffers (the fresh temporaries of the
textbook form cost as much as the matrix products) with the same arithmetic, so results are the same to the
bit, and the embedding noise is drawn as ``standard_normal`` times ``noise``: the numbers ``normal(0, noise)``
draws, faster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.early_stopping import EarlyStopping
from rag_routing.validation import check_choice, check_number

Params = dict[str, np.ndarray]
#: ``(params, batch row indices, rng) -> (loss, gradients)`` on training rows.
LossFn = Callable[[Params, np.ndarray, "np.random.Generator | None"], tuple[float, Params]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def scaled_targets(quality: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Quality mapped to [0, 1] (unchanged for 0/1 or probability outcomes) and the (low, high) of the map."""
    known = quality[~np.isnan(quality)]
    if known.size == 0:
        raise InvalidInputError("the dataset has no known outcome (quality is all NaN); nothing to learn from")
    low, high = min(0.0, float(known.min())), max(1.0, float(known.max()))
    return (quality - low) / (high - low), low, high


def inner_split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train, validation) row indices; no validation rows (so no early stopping) when ``fraction``
    of ``n`` is under 5 rows: a smaller validation set would only stop training at random."""
    order = rng.permutation(n)
    n_val = int(round(fraction * n))
    n_val = n_val if n_val >= 5 and n - n_val >= 5 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_adam(params: Params, loss_fn: LossFn, train_rows: np.ndarray, val_rows: np.ndarray, *,
               lr: float, weight_decay: float, batch_size: int, max_epochs: int, patience: int,
               rng: np.random.Generator, max_steps: int | None = None) -> tuple[Params, int]:
    """Adam (Kingma & Ba 2015) with L2 weight decay on every array except biases (names starting with ``b``).

    Keeps the parameters of the epoch with the lowest validation loss and stops after ``patience`` epochs
    without improvement, after ``max_epochs`` epochs, or after ``max_steps`` gradient steps in all (``None``: no
    cap); a cap reached mid-epoch ends that epoch early, with one last validation. Returns (best parameters,
    epochs run, the last one counted even when cut short). The update runs in place on preallocated buffers,
    operation for operation the same arithmetic as the textbook form (same result to the bit).
    """
    params = {k: a.copy() for k, a in params.items()}
    m = {k: np.zeros_like(a) for k, a in params.items()}
    v = {k: np.zeros_like(a) for k, a in params.items()}
    buf = {k: (np.empty_like(a), np.empty_like(a)) for k, a in params.items()}
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    best = {k: a.copy() for k, a in params.items()}
    stopper, epoch = EarlyStopping(patience, lambda: {k: a.copy() for k, a in params.items()}), 0
    for epoch in range(1, max_epochs + 1):
        order = rng.permutation(train_rows)
        for start in range(0, len(order), batch_size):
            if max_steps is not None and step >= max_steps:
                break
            _, grads = loss_fn(params, order[start:start + batch_size], rng)
            step += 1
            c1, c2 = 1 - beta1**step, 1 - beta2**step
            for k, g in grads.items():
                p, mk, vk, (t1, t2) = params[k], m[k], v[k], buf[k]
                if weight_decay and not k.startswith("b"):
                    g = np.add(g, np.multiply(weight_decay, p, out=t1), out=t2)
                mk *= beta1                                          # m = beta1 m + (1 - beta1) g
                mk += np.multiply(1 - beta1, g, out=t1)
                vk *= beta2                                          # v = beta2 v + (1 - beta2) g g
                vk += np.multiply(np.multiply(1 - beta2, g, out=t1), g, out=t1)
                np.divide(vk, c2, out=t2)                            # p -= lr m_hat / (sqrt(v_hat) + eps)
                np.sqrt(t2, out=t2)
                t2 += eps
                np.multiply(lr, np.divide(mk, c1, out=t1), out=t1)
                p -= np.divide(t1, t2, out=t1)
        if len(val_rows) == 0:
            best = params
        else:
            val_loss, _ = loss_fn(params, val_rows, None)
            if stopper.update(val_loss):
                break
        if max_steps is not None and step >= max_steps:
            break
    if stopper.best_state is not None:
        best = stopper.best_state
    return {k: a.copy() for k, a in best.items()}, epoch


class MatrixFactorizationRouter(Router):
    """Query-candidate matrix factorisation: RouteLLM's ``mf`` router (Ong et al. 2025, "RouteLLM: Learning to
    Route LLMs from Preference Data", ICLR 2025) in the EmbedLLM setting of N candidates (R. Zhuang et al.
    2025, "EmbedLLM: Learning Compact Representations of Large Language Models", ICLR 2025).

    Estimates, for each query and candidate, the probability that the candidate answers well, as a bilinear
    score between a projected query embedding and a learned candidate embedding.

    The score is RouteLLM's ``score(q, M) = w2ᵀ(v̂_M ⊙ (W1 e_q)) + b_M`` with ``v̂_M`` the L2-normalised
    candidate vector, ``W1`` a ``dim x d`` projection without bias, and a per-candidate bias ``b_M`` (RouteLLM
    has none; it carries each candidate's base rate here). Two objectives:

    * ``"pointwise"`` (default): binary cross-entropy of ``sigmoid(score)`` against each known outcome;
      predicted quality is ``sigmoid(score)``, in [0, 1] (outcomes outside [0, 1] are min-max scaled for
      training and mapped back).
    * ``"pairwise"``: RouteLLM's Bradley-Terry loss on every pair of candidates with different known outcomes
      on a query, ``P(a beats b) = sigmoid(score_a - score_b)``; predicted quality is the mean win
      probability against the other candidates (the BT probability "vs the field").

    NaN outcomes are masked out of both losses. Training adds Gaussian noise of scale ``noise`` to the query
    embeddings (RouteLLM's stabiliser), uses Adam with L2 ``weight_decay``, and stops early on an inner
    validation split of ``validation_fraction`` of the training queries; a fixed ``seed`` gives the same model.
    ``max_steps`` (an integer >= 1, or ``None`` for no cap) also ends training after that many gradient steps in
    all, whatever the epoch (see the module docstring); it binds only on large training sets.

    Example:
        >>> import numpy as np
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> queries = [f"integrate x^{i} dx" for i in range(6)] + [f"say hello to friend {i}" for i in range(6)]
        >>> quality = np.array([[0.0, 1.0]] * 6 + [[1.0, 1.0]] * 6)     # columns: small, large
        >>> train = RoutingDataset(queries, ["small", "large"], quality, np.tile([1e-4, 1e-2], (12, 1)),
        ...                        metadata=[{"task": "math"}] * 6 + [{"task": "chat"}] * 6)
        >>> router = MatrixFactorizationRouter(dim=8, featurizer="tfidf").fit(train)
        >>> [d.candidate for d in router.route(["integrate x^9 dx", "say hello to friend 7"], lam=20.0)]
        ['large', 'small']
    """

    name = "mf"

    def __init__(self, *, dim: int = 64, objective: str = "pointwise", lr: float = 3e-3,
                 weight_decay: float = 1e-4, noise: float = 0.02, batch_size: int = 128, max_epochs: int = 200,
                 patience: int = 10, validation_fraction: float = 0.1, seed: int = 0,
                 max_steps: int | None = 6000, **kwargs: Any):
        super().__init__(**kwargs)
        self.dim = dim
        self.objective = objective
        self.lr = lr
        self.weight_decay = weight_decay
        self.noise = noise
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.max_steps = max_steps
        self._check_params()

    def _check_params(self) -> None:
        check_choice("objective", self.objective, ("pointwise", "pairwise"))
        check_number("dim", self.dim, 1, integer=True)
        check_number("lr", self.lr, 0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("noise", self.noise, 0.0)
        check_number("batch_size", self.batch_size, 1, integer=True)
        check_number("max_epochs", self.max_epochs, 1, integer=True)
        check_number("patience", self.patience, 1, integer=True)
        check_number("validation_fraction", self.validation_fraction, 0.0, 0.5)
        check_number("seed", self.seed, 0, integer=True)
        if self.max_steps is not None:
            check_number("max_steps", self.max_steps, 1, integer=True)

    # ------------------------------------------------------------------ model
    def _scores(self, params: Params, E: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        norms = np.linalg.norm(params["P"], axis=1, keepdims=True)
        U = params["P"] / np.maximum(norms, 1e-12)
        H = E @ params["W1"].T
        A = H * params["w2"]
        return A @ U.T + params["b"], (U, norms, H, A)

    def _loss(self, params: Params, E: np.ndarray, Y: np.ndarray, rows: np.ndarray,
              rng: np.random.Generator | None) -> tuple[float, Params]:
        Eb, Yb = E[rows], Y[rows]
        if rng is not None and self.noise > 0:
            noisy = rng.standard_normal(Eb.shape)  # the numbers rng.normal(0.0, noise, shape) draws, faster
            noisy *= self.noise
            noisy += Eb
            Eb = noisy
        S, (U, norms, H, A) = self._scores(params, Eb)
        known = ~np.isnan(Yb)
        if self.objective == "pointwise":
            y = np.where(known, Yb, 0.0)
            count = max(int(known.sum()), 1)
            loss = float(np.where(known, np.logaddexp(0.0, S) - y * S, 0.0).sum() / count)
            dS = np.where(known, sigmoid(S) - y, 0.0) / count
        else:
            # pairs (a, b) where a's known outcome beats b's: loss softplus(-(s_a - s_b))
            y = np.where(known, Yb, -np.inf)
            wins = (y[:, :, None] > y[:, None, :]) & known[:, None, :]
            count = max(int(wins.sum()), 1)
            D = S[:, :, None] - S[:, None, :]
            loss = float(np.where(wins, np.logaddexp(0.0, -D), 0.0).sum() / count)
            G = np.where(wins, sigmoid(D) - 1.0, 0.0) / count
            dS = G.sum(axis=2) - G.sum(axis=1)
        if rng is None:
            return loss, {}
        dA = dS @ U
        dU = dS.T @ A
        dP = (dU - U * (U * dU).sum(axis=1, keepdims=True)) / np.maximum(norms, 1e-12)
        dH = dA * params["w2"]
        return loss, {"P": dP, "W1": dH.T @ Eb, "w2": (dA * H).sum(axis=0), "b": dS.sum(axis=0)}

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._check_params()
        m = dataset.n_candidates
        if self.objective == "pairwise" and m < 2:
            raise InvalidInputError("the pairwise objective needs at least 2 candidates; use 'pointwise'")
        E = np.asarray(features, dtype=np.float64)
        Y, self.quality_low_, self.quality_high_ = scaled_targets(dataset.quality)
        rng = np.random.default_rng(self.seed)
        d, k = E.shape[1], self.dim
        known = ~np.isnan(Y)
        base = np.where(known, Y, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
        base = np.clip(np.where(known.any(axis=0), base, 0.5), 0.02, 0.98)
        params = {
            "P": rng.normal(0.0, 1.0, (m, k)),
            "W1": rng.uniform(-1.0, 1.0, (k, d)) / np.sqrt(d),
            "w2": rng.uniform(-1.0, 1.0, k) / np.sqrt(k),
            "b": np.log(base / (1 - base)) if self.objective == "pointwise" else np.zeros(m),
        }
        has_outcome = np.flatnonzero(known.any(axis=1))
        train_rows, val_rows = inner_split(len(has_outcome), self.validation_fraction, rng)

        def loss_fn(p: Params, rows: np.ndarray, r: np.random.Generator | None) -> tuple[float, Params]:
            return self._loss(p, E, Y, has_outcome[rows], r)

        params, self.n_epochs_ = train_adam(
            params, loss_fn, train_rows, val_rows, lr=self.lr, weight_decay=self.weight_decay,
            batch_size=self.batch_size, max_epochs=self.max_epochs, patience=self.patience, rng=rng,
            max_steps=self.max_steps)
        self.params_ = params

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        S, _ = self._scores(self.params_, np.asarray(features, dtype=np.float64))
        if self.objective == "pointwise":
            P = sigmoid(S)
        else:
            m = S.shape[1]
            wins = sigmoid(S[:, :, None] - S[:, None, :]).sum(axis=2) - 0.5  # drop the self-match (0.5)
            P = wins / max(m - 1, 1)
        return self.quality_low_ + (self.quality_high_ - self.quality_low_) * P

    def candidate_embeddings(self) -> np.ndarray:
        """``(n_candidates, dim)`` unit vectors ``v̂_M`` (EmbedLLM's compact candidate representations)."""
        self._check_fitted()
        P = self.params_["P"]
        return P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"quality_low": self.quality_low_, "quality_high": self.quality_high_, "n_epochs": self.n_epochs_}
        return config, dict(self.params_)

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.quality_low_ = float(config["quality_low"])
        self.quality_high_ = float(config["quality_high"])
        self.n_epochs_ = int(config["n_epochs"])
        self.params_ = {k: np.asarray(arrays[k], dtype=np.float64) for k in ("P", "W1", "w2", "b")}
        m = len(self.candidates_)
        if self.params_["P"].shape[0] != m or self.params_["b"].shape != (m,):
            raise ValueError(f"candidate embeddings do not match {m} candidates")


__all__ = ["MatrixFactorizationRouter", "train_adam", "check_number", "scaled_targets", "inner_split", "sigmoid"]
