"""Online routers that learn from feedback (survey §4.3): bandits over the candidate pool.

=========================  ===========  =====================================================================
class                      short name   what it learns
=========================  ===========  =====================================================================
EpsilonGreedyRouter        epsilon_greedy  a Q-value per candidate; ε-greedy exploration (PickLLM)
LinearRewardInactionRouter lri          action probabilities, linear reward-inaction automaton (PickLLM)
LinUCBRouter               linucb       per-candidate ridge regression on query embeddings + UCB (MetaLLM)
ThompsonRouter             thompson     the same Bayesian linear model, posterior sampling
=========================  ===========  =====================================================================

All share :class:`~rag_routing.routers.bandits.base.BanditRouter`: ``route`` explores and remembers,
``update(decision_id, reward)`` learns, ``predict_quality`` gives the greedy estimates for the shared rule.
"""

from rag_routing.routers.bandits.base import BanditRouter
from rag_routing.routers.bandits.context_free import EpsilonGreedyRouter, LinearRewardInactionRouter
from rag_routing.routers.bandits.feedback import PendingDecision, UnknownDecisionError
from rag_routing.routers.bandits.linear import LinearBandit, LinUCBRouter, ThompsonRouter
from rag_routing.routers.bandits.store import (
    BanditStateStore,
    MemoryBanditStore,
    SQLiteBanditStore,
    decode_arrays,
    encode_arrays,
)

__all__ = [
    "BanditRouter",
    "PendingDecision",
    "UnknownDecisionError",
    "EpsilonGreedyRouter",
    "LinearRewardInactionRouter",
    "LinearBandit",
    "LinUCBRouter",
    "ThompsonRouter",
    "BanditStateStore",
    "MemoryBanditStore",
    "SQLiteBanditStore",
    "encode_arrays",
    "decode_arrays",
]
