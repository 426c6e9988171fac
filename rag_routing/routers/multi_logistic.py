"""Many L2-regularised logistic regressions on one shared sparse design matrix.

``tfidf_lr`` needs one logistic regression per candidate on the same TF-IDF rows. scikit-learn fits need each
candidate's known rows copied out (and a fractional outcome's row duplicated with two weights). Here every
candidate reads the one shared matrix ``X`` (and ``X.T``): unknown outcomes (NaN) weigh 0 and a soft target in
[0, 1] is the exact equivalent of the duplicated rows. The solver is L-BFGS-B with scikit-learn's
``LogisticRegression(solver="lbfgs")`` objective and stopping rule: per candidate, the weighted mean log-loss
plus ``||w||² / (2 C S)`` (``S`` the candidate's total weight), unpenalised intercept, ``gtol = tol``.

``together`` candidates are stacked into one multi-output problem (independent, so the optimum is each one's):
one ``X @ W`` and one ``X.T @ R`` per iteration for the group. Measured on 20,000 synthetic rows x 10
candidates, the joint solve took 2.3x longer than one solve per candidate (its iterations follow the
worst-conditioned candidate), so the default is ``together=1``.

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]]))
    >>> Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, np.nan], [0.0, 1.0]])
    >>> coef, intercept = fit_logistic_columns(X, Y, C=10.0)
    >>> bool(coef[0, 0] > 0 > coef[0, 1]), bool(coef[1, 1] > 0 > coef[1, 0])
    (True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def _solve_group(X: Any, XT: Any, Y: np.ndarray, C: float, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy import optimize

    known = ~np.isnan(Y)
    weight = known / known.sum(0)  # each column's mean loss, as scikit-learn's sample-weight normalisation
    target = np.where(known, Y, 0.0)
    d, g = X.shape[1], Y.shape[1]
    l2 = 1.0 / (C * known.sum(0))

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: d * g].reshape(d, g), theta[d * g :]
        Z = np.asarray(X @ W) + b
        loss = (weight * (np.logaddexp(0.0, Z) - target * Z)).sum() + 0.5 * (l2 * (W * W).sum(0)).sum()
        R = weight * (0.5 * (1.0 + np.tanh(0.5 * Z)) - target)  # sigmoid without overflow
        grad = np.concatenate([(np.asarray(XT @ R) + W * l2).ravel(), R.sum(0)])
        return float(loss), grad

    result = optimize.minimize(loss_and_grad, np.zeros(d * g + g), method="L-BFGS-B", jac=True,
                               options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                                        "ftol": 64 * np.finfo(float).eps})
    theta = result.x
    return theta[: d * g].reshape(d, g).T.copy(), theta[d * g :].copy()


def fit_logistic_columns(X: Any, Y: np.ndarray, C: float, max_iter: int = 3000, tol: float = 1e-4,
                         together: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (m, d), intercept (m,))``: one logistic regression per column of ``Y`` (targets in [0, 1], NaN =
    unknown) on the rows of the sparse matrix ``X``. A column with no known outcome gets zeros; one whose known
    outcomes are all equal gets that constant as its intercept (as before)."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X, dtype=np.float64)
    n, d = X.shape
    m = Y.shape[1]
    coef, intercept = np.zeros((m, d)), np.zeros(m)
    solve = []
    for j in range(m):
        y = Y[~np.isnan(Y[:, j]), j]
        if y.size == 0:
            continue
        if np.all(y == y[0]):
            intercept[j] = _logit(float(y[0]))
            continue
        solve.append(j)
    if not solve:
        return coef, intercept
    XT = X.T.tocsr()
    group = max(1, min(len(solve), int(together)))
    for start in range(0, len(solve), group):
        cols = solve[start : start + group]
        coef[cols], intercept[cols] = _solve_group(X, XT, Y[:, cols], C, max_iter, tol)
    return coef, intercept


__all__ = ["fit_logistic_columns"]
