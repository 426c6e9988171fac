"""A feedback-poisoning campaign against an online router, honest history first, spread over any number of keys.

:func:`feedback_campaign` replays what the issue's adversarial review did: honest users rate the router's
answers for two simulated days ('large' right 90 % of the time, 'small' 50 %), then an attacker sends
``n_poison`` ratings in one hour from ``n_keys`` keys, rating 'small' 1 and 'large' 0. It reports whether the
bandit still prefers the right candidate afterwards, how much poison the defence rejected, and how much honest
feedback it rejected once the honest users had standing (day two). The clock is simulated, so the run takes
well under a second.

Example:
    >>> from rag_routing.security.identities import NewKeyPool
    >>> plain = feedback_campaign(seed=0, n_keys=100)
    >>> pooled = feedback_campaign(seed=0, n_keys=100, identities=lambda clock: NewKeyPool(10, 3600, clock=clock))
    >>> plain.flipped, pooled.flipped, pooled.poison_rejected >= 1950
    (True, False, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rag_routing.security.feedback import FeedbackSanitizer
from rag_routing.security.identities import NewKeyPool

DAY = 24 * 3600.0


class SimulatedClock:
    """A settable clock for simulations (``clock()`` returns ``now``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class CampaignReport:
    """What one campaign did: ``flipped`` = the bandit prefers 'small' afterwards (it preferred 'large')."""

    seed: int
    n_keys: int
    defended: bool
    flipped: bool
    poison_sent: int
    poison_rejected: int
    honest_sent_day2: int
    honest_rejected_day2: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feedback_campaign(*, seed: int, n_keys: int, identities: Callable[[SimulatedClock], NewKeyPool] | None = None,
                      max_updates: int = 20, n_users: int = 50, n_honest: int = 1500, n_poison: int = 2000,
                      epsilon: float = 0.2) -> CampaignReport:
    """Run one campaign against an epsilon-greedy bandit behind a :class:`FeedbackSanitizer`.

    ``identities`` builds the :class:`NewKeyPool` on the simulation's clock (``None``: per-key limits only).
    """
    from rag_routing.routers.bandits import EpsilonGreedyRouter

    clock = SimulatedClock()
    rng = np.random.default_rng(seed)
    bandit = EpsilonGreedyRouter(epsilon=epsilon, lam=1.0, seed=seed).start(["small", "large"], cost=[0.01, 0.2])
    guard = FeedbackSanitizer(bandit, max_updates=max_updates, window_seconds=3600, clip=(0.0, 1.0), clock=clock,
                              identities=None if identities is None else identities(clock))
    honest_day2 = honest_rejected = 0
    for step in range(n_honest):
        clock.now = step * 2 * DAY / n_honest
        d = guard.route(["q"])[0]
        right = rng.random() < (0.9 if d.candidate == "large" else 0.5)
        accepted = guard.update(d.decision_id, quality=float(right), principal=f"user{step % n_users}").accepted
        if clock.now >= DAY:
            honest_day2 += 1
            honest_rejected += not accepted
    before = int(guard.route_indices(["q"])[0])
    rejected = 0
    for step in range(n_poison):
        clock.now = 2 * DAY + step * 3600 / n_poison
        d = guard.route(["q"])[0]
        rejected += not guard.update(d.decision_id, quality=float(d.candidate == "small"),
                                     principal=f"attacker-{step % n_keys}").accepted
    after = int(guard.route_indices(["q"])[0])
    return CampaignReport(seed=seed, n_keys=n_keys, defended=identities is not None,
                          flipped=before == 1 and after == 0, poison_sent=n_poison, poison_rejected=rejected,
                          honest_sent_day2=honest_day2, honest_rejected_day2=honest_rejected)


__all__ = ["feedback_campaign", "CampaignReport", "SimulatedClock"]
