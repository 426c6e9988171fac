"""`NewKeyPool`: keys without standing share one identity, so many fresh keys weigh as much as one.

Per-principal defences (a quota of expensive routes, a routing-shift alarm, a feedback rate limit) bound what
*one* key can do. An attacker who spreads the same campaign over ten or a hundred fresh keys (a Sybil attack)
stays under every per-key threshold: each key sends a handful of requests and none of them looks unusual. The
pool closes that gap on the population: a key acts under its own name only once it has *standing* — at least
``min_requests`` interactions spread over at least ``min_age_seconds`` since it was first seen. Until then it
acts as the shared principal :attr:`NewKeyPool.pool_name`, so every fresh key together gets one key's quota,
one routing-shift window and one feedback rate limit. Established keys are unaffected; honest newcomers share
the pool's limits until they have standing (damping, not refusal).

Wire it with ``GuardedRouter(router, guards, identities=pool)`` and ``FeedbackSanitizer(bandit,
identities=pool)`` (the same pool, so routes and feedback build standing together). What it does not stop: an
attacker patient enough to age many keys with clean traffic first; per-key limits then bound each key, and the
total grows with the number of aged keys (see the README's security model).

Example:
    >>> clock = iter(range(0, 10_000, 600)).__next__          # each call: ten minutes later
    >>> pool = NewKeyPool(min_requests=3, min_age_seconds=1200, clock=clock)
    >>> [pool.observe("alice") for _ in range(4)]
    ['<new keys>', '<new keys>', '<new keys>', 'alice']
    >>> pool.observe("mallory-17"), pool.established("alice")
    ('<new keys>', True)
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from rag_routing.errors import InvalidInputError

#: The shared principal of keys without standing (angle brackets: not a plausible API key).
POOL_NAME = "<new keys>"


class NewKeyPool:
    """Sybil damping: a key without standing acts as one shared principal (see the module docstring).

    Parameters:
        min_requests: interactions (routes and feedback) a key needs before it acts under its own name.
        min_age_seconds: time since the key was first seen before it acts under its own name.
        established: keys that have standing from the start (your own services, known customers).
        pool_name: the shared principal of keys without standing.
        max_tracked: keys remembered (least recently seen forgotten first; a forgotten key starts again, which
            only ever delays standing).
        clock: seconds, monotonic (injectable for tests and simulations).
    """

    def __init__(self, min_requests: int = 20, min_age_seconds: float = 3600.0, *, established: Iterable[str] = (),
                 pool_name: str = POOL_NAME, max_tracked: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic):
        if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 0:
            raise InvalidInputError(f"min_requests must be an integer >= 0, got {min_requests!r}")
        if isinstance(min_age_seconds, bool) or not isinstance(min_age_seconds, (int, float)) \
                or not 0 <= min_age_seconds < math.inf:
            raise InvalidInputError(f"min_age_seconds must be a number >= 0, got {min_age_seconds!r}")
        if isinstance(max_tracked, bool) or not isinstance(max_tracked, int) or max_tracked < 1:
            raise InvalidInputError(f"max_tracked must be an integer >= 1, got {max_tracked!r}")
        if not isinstance(pool_name, str) or not pool_name:
            raise InvalidInputError(f"pool_name must be a non-empty string, got {pool_name!r}")
        self.min_requests, self.min_age_seconds = min_requests, float(min_age_seconds)
        self.pool_name, self.max_tracked, self.clock = pool_name, max_tracked, clock
        self.trusted = frozenset(_check_names(established))
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (first seen, interactions)
        self._lock = threading.Lock()

    def _has_standing(self, principal: str, now: float) -> bool:
        if principal in self.trusted:
            return True
        first, count = self._seen.get(principal, (now, 0))
        return count >= self.min_requests and now - first >= self.min_age_seconds

    def observe(self, principal: str, n: int = 1) -> str:
        """Record ``n`` interactions of ``principal``; the principal they act as (the key, or the pool)."""
        _check_names([principal])
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"n must be an integer >= 1, got {n!r}")
        with self._lock:
            now = self.clock()
            # Standing is judged on the history before these interactions: a burst cannot establish itself.
            acting = principal if self._has_standing(principal, now) else self.pool_name
            first, count = self._seen.pop(principal, (now, 0))
            self._seen[principal] = (first, count + n)
            while len(self._seen) > self.max_tracked:
                self._seen.popitem(last=False)
            return acting

    def effective(self, principal: str) -> str:
        """The principal ``principal`` acts as now, without recording an interaction."""
        _check_names([principal])
        with self._lock:
            return principal if self._has_standing(principal, self.clock()) else self.pool_name

    def established(self, principal: str) -> bool:
        """Whether ``principal`` acts under its own name."""
        return self.effective(principal) == principal

    def revoke(self, principal: str) -> None:
        """Take ``principal``'s standing away (e.g. after an alarm on it): it starts again as a new key."""
        _check_names([principal])
        with self._lock:
            self._seen.pop(principal, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def __repr__(self) -> str:
        return (f"NewKeyPool(min_requests={self.min_requests}, min_age_seconds={self.min_age_seconds:g}, "
                f"tracked={len(self)})")


def _check_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"a principal must be a non-empty string, got {name!r}")
    return names


__all__ = ["NewKeyPool", "POOL_NAME"]
