"""Early stopping on a validation loss, shared by every router that trains iteratively (numpy Adam in
``mf`` / ``regressor``, and the PyTorch loops of ``encoder``, ``contrastive`` and ``graph``).

Each evaluation reports its loss; an improvement of more than ``min_delta`` takes a snapshot of the model
(whatever ``snapshot()`` returns), and ``patience`` evaluations in a row without one say stop. The caller
restores ``best_state`` at the end (``None``: no evaluation improved on the start).

Example:
    >>> stopper = EarlyStopping(patience=2, snapshot=lambda: "weights")
    >>> [stopper.update(loss) for loss in (3.0, 2.0, 2.5, 2.4)]
    [False, False, False, True]
    >>> stopper.best, stopper.best_state, stopper.history
    (2.0, 'weights', [3.0, 2.0, 2.5, 2.4])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class EarlyStopping:
    """Tracks the best validation loss and its snapshot (see module docstring).

    Args:
        patience: evaluations without improvement before :meth:`update` says stop.
        snapshot: returns a copy of the model to keep when the loss improves.
        min_delta: how much lower a loss must be to count as an improvement.
    """

    def __init__(self, patience: int, snapshot: Callable[[], Any], *, min_delta: float = 1e-6):
        self.patience, self.snapshot, self.min_delta = patience, snapshot, min_delta
        self.best = math.inf
        self.best_state: Any = None
        self.stale = 0
        self.history: list[float] = []

    def update(self, loss: float) -> bool:
        """Record one validation loss; ``True`` when training should stop."""
        self.history.append(loss)
        if loss < self.best - self.min_delta:
            self.best, self.stale, self.best_state = loss, 0, self.snapshot()
            return False
        self.stale += 1
        return self.stale >= self.patience


__all__ = ["EarlyStopping"]
