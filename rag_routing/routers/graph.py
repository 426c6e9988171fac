"""`GraphRouter`: routing as edge prediction on a heterogeneous graph of tasks, queries and candidates (Feng et al.
2025, "GraphRouter: A Graph-based Router for LLM Selections", ICLR 2025; survey §4.2.4).

Nodes and edges:

* **task** nodes: one per value of a task field of the queries' metadata (RouterBench's ``eval_name``, MMLU's
  ``subject``, ...) or, without one, one per k-means cluster of the training queries; features: the mean
  features of their queries;
* **query** nodes: the router's featurizer (MiniLM by default, or TF-IDF); each query is linked to its task and
  to its ``k_neighbours`` most similar training queries (edge feature: cosine similarity);
* **candidate** nodes: the embedded one-line **text description** of the candidate (same featurizer) and its
  log-price (mean US $ per call), so a candidate never seen in training gets a node from its description
  alone; descriptions come from ``descriptions=`` or the shipped table (:mod:`rag_routing.descriptions`);
* **query-candidate** edges carry each observed outcome (quality, log-cost); **candidate-task** edges the
  candidate's mean quality on the task (or "not observed") and its log-price.

A two-layer graph attention network with edge features (32 hidden dimensions, as in the paper; plain PyTorch,
:mod:`rag_routing.routers.graph_network`) updates the nodes, and an MLP scores every query-candidate pair: the
predicted quality ``S[q, m]``. Training hides the outcomes of a random share of the training queries and
predicts them from the rest (GraphRouter's masked-edge training). A new query joins the graph as a node with
no outcome edges, linked to its task and its nearest training queries, so it is scored exactly like a masked
training query.

A new candidate needs no retraining (:meth:`GraphRouter.add_candidate`): a node from its description and price,
plus, if you have them, its outcomes on a few anchor queries (the paper's few-shot setting for new LLMs).
Training hides, at random steps, every outcome of one candidate or all but a few (cold-start dropout, Volkovs et
al. 2017, "DropoutNet"), so the network learns to score a candidate from its description, price, task context
and whatever outcomes it has. How much a description alone tells depends on how many candidates the network
learned from: see ``benchmarks/graph_router.py``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag_routing.descriptions import describe, require_descriptions
from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import CorruptStateError, InvalidInputError, MissingDescriptionError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.early_stopping import EarlyStopping
from rag_routing.routers.graph_memory import COST_EPS, GraphMemory, assign_tasks, normalise_rows, top_similar
from rag_routing.routers.matrix_factorization import inner_split, scaled_targets
from rag_routing.validation import check_float, check_int

#: Largest share of a "just added" candidate's outcomes left visible at a cold-start training step.
MAX_ANCHOR_SHARE = 0.1
#: Query nodes scored per forward pass at prediction time.
PREDICT_BATCH = 2048


class GraphRouter(Router):
    """GraphRouter (Feng et al. 2025): a graph attention network over task, query and candidate nodes predicts the
    quality of each query-candidate edge; candidates are nodes built from a text description and a price, so
    :meth:`add_candidate` routes to a new one without retraining. See the module docstring.

    Parameters:
        descriptions: candidate name -> one-line description; names missing here are looked up in the shipped
            table (:func:`rag_routing.descriptions.describe`), and a candidate found in neither is a
            :class:`~rag_routing.errors.MissingDescriptionError`.
        task_key: metadata field naming each query's task; ``"auto"`` tries ``task``, ``eval_name``,
            ``subject``, ``category`` (the first present in every row with 2 or more values), ``None`` always
            clusters. Without a task field the tasks are ``n_tasks`` k-means clusters of the queries.
        k_neighbours: training queries each query node is linked to (0 = none).
        hidden, layers, heads, dropout: the network (paper: 2 layers of 32).
        steps, lr, weight_decay: full-graph AdamW steps; eval_every, patience, val_fraction: early stopping on
            held-out training queries (checked every ``eval_every`` steps, stop after ``patience`` checks
            without improvement).
        context_fraction: share of the training queries whose outcomes are visible at a training step (the
            rest are predicted); cold_start: probability that a step also hides one candidate's outcomes.
        max_train: train on a random subset of this many queries; seed: everything random.
        **kwargs: ``lam``, ``budget``, ``fallback``, ``featurizer`` (see :class:`Router`).

    Example:
        >>> import numpy as np
        >>> maths = [f"solve the integral of x^{i} dx" for i in range(12)]
        >>> chat = [f"say hello to my friend number {i}" for i in range(12)]
        >>> ds = RoutingDataset(maths + chat, ["solver", "chatter"], [[1, 0]] * 12 + [[0, 1]] * 12,
        ...                     [[0.01, 0.01]] * 24)
        >>> router = GraphRouter(featurizer="tfidf", steps=60, descriptions={
        ...     "solver": "solves integral maths", "chatter": "says hello to a friend"}).fit(ds)
        >>> router.route_indices(["solve the integral of x^99 dx", "say hello to my friend number 99"]).tolist()
        [0, 1]
    """

    name = "graph"
    in_bench_all = False  # needs a description for every candidate: name it in ``--routers`` explicitly

    def __init__(self, *, descriptions: Mapping[str, str] | None = None, task_key: str | None = "auto",
                 n_tasks: int = 8, k_neighbours: int = 10, hidden: int = 32, layers: int = 2, heads: int = 2,
                 dropout: float = 0.3, steps: int = 300, lr: float = 1e-3, weight_decay: float = 1e-4,
                 context_fraction: float = 0.7, cold_start: float = 0.3, val_fraction: float = 0.1,
                 eval_every: int = 10, patience: int = 5, max_train: int | None = None, seed: int = 0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if descriptions is not None and not (isinstance(descriptions, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in descriptions.items())):
            raise InvalidInputError("descriptions must map candidate names to non-empty strings")
        self.descriptions = None if descriptions is None else dict(descriptions)
        if task_key is not None and not (isinstance(task_key, str) and task_key):
            raise InvalidInputError(f"task_key must be a metadata field name, 'auto' or None, got {task_key!r}")
        self.task_key = task_key
        self.n_tasks = check_int("n_tasks", n_tasks)
        self.k_neighbours = check_int("k_neighbours", k_neighbours, low=0)
        self.hidden = check_int("hidden", hidden, low=2)
        self.layers = check_int("layers", layers)
        self.heads = check_int("heads", heads)
        if self.hidden % self.heads:
            raise InvalidInputError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.dropout = check_float("dropout", dropout, 0.0, 0.9)
        self.steps = check_int("steps", steps)
        self.lr = check_float("lr", lr, open_low=True)
        self.weight_decay = check_float("weight_decay", weight_decay)
        self.context_fraction = check_float("context_fraction", context_fraction, 0.05, 0.95)
        self.cold_start = check_float("cold_start", cold_start, 0.0, 1.0)
        self.val_fraction = check_float("val_fraction", val_fraction, 0.0, 0.5)
        self.eval_every = check_int("eval_every", eval_every)
        self.patience = check_int("patience", patience)
        self.max_train = None if max_train is None else check_int("max_train", max_train, low=4)
        self.seed = check_int("seed", seed, low=0)

    def fit(self, dataset: RoutingDataset) -> GraphRouter:
        """Learn from a :class:`RoutingDataset` (every candidate needs a description: checked first)."""
        if isinstance(dataset, RoutingDataset):
            require_descriptions(dataset.candidates, self.descriptions)
        super().fit(dataset)
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "network_") and super().is_fitted

    # ------------------------------------------------------------------ graph pieces
    def _task_of(self, F: np.ndarray, X: RouterInput) -> np.ndarray:
        """Task node of each new query: its metadata task when ``X`` is a dataset that has a known one, else the
        task with the nearest centroid."""
        C = self.memory_.task_centroids
        tasks = np.argmin((C * C).sum(1)[None, :] - 2.0 * F @ C.T, axis=1).astype(np.int64)
        if self.task_key_ is not None and isinstance(X, RoutingDataset):
            lookup = {n: i for i, n in enumerate(self.task_names_)}
            known = np.array([lookup.get(str(m.get(self.task_key_)), -1) for m in X.metadata], dtype=np.int64)
            tasks = np.where(known >= 0, known, tasks)
        return tasks

    def _embed_descriptions(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(self.featurizer_, PrecomputedFeaturizer):
            raise InvalidInputError("GraphRouter embeds candidate descriptions as text, which a precomputed "
                                    "featurizer cannot do; use featurizer='minilm' (its on-disk cache keeps the "
                                    "queries' vectors) or 'tfidf'")
        return normalise_rows(self.featurizer_.transform(list(texts)))

    def _log_cost_z(self, cost: np.ndarray | float) -> np.ndarray:
        return ((np.log(np.asarray(cost, dtype=np.float64) + COST_EPS) - self.log_cost_stats_[0])
                / self.log_cost_stats_[1]).astype(np.float32)

    def _targets(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mem = self.memory_
        return mem.features[rows], mem.task[rows], mem.neighbours[rows], mem.neighbour_sims[rows]

    # ------------------------------------------------------------------ training
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        assert features is not None
        rng = np.random.default_rng(self.seed)
        rows = np.flatnonzero(~np.isnan(dataset.quality).all(axis=1))  # a query without outcomes teaches nothing
        if self.max_train is not None and len(rows) > self.max_train:
            rows = np.sort(rng.choice(rows, self.max_train, replace=False))
        if len(rows) < 4:
            raise InvalidInputError("GraphRouter needs at least 4 training queries with a known outcome")
        if len(rows) < len(dataset):
            dataset, features = dataset.subset(rows), features[rows]
        texts = require_descriptions(self.candidates_, self.descriptions)
        self.descriptions_ = dict(zip(self.candidates_, texts))
        F = normalise_rows(features)
        quality, low, high = scaled_targets(dataset.quality)
        self.quality_range_ = (low, high)
        log_cost = np.log(dataset.cost + COST_EPS)
        known = log_cost[np.isfinite(log_cost)]
        # Log-costs are centred and divided by their spread, but never by less than one e-fold: a pool of
        # similar prices must not turn a new candidate's modest price difference into a huge feature value.
        self.log_cost_stats_ = (float(known.mean()), max(float(known.std()), 1.0))
        candidate_z = self._log_cost_z(self.mean_cost_)
        cost_z = np.where(np.isnan(dataset.cost), candidate_z[None, :], self._log_cost_z(dataset.cost))
        task, self.task_names_, self.task_key_ = assign_tasks(F, dataset.metadata, self.task_key, self.n_tasks,
                                                             self.seed)
        centroids = np.vstack([F[task == t].mean(axis=0) for t in range(len(self.task_names_))])
        pool = int(math.ceil(self.k_neighbours / self.context_fraction)) + self.k_neighbours
        neighbours, sims = top_similar(F, F, pool, exclude_self=True)
        self.memory_ = GraphMemory(F, quality.astype(np.float32), cost_z.astype(np.float32), task, neighbours, sims,
                                   centroids.astype(np.float32), self._embed_descriptions(texts), candidate_z)
        self._train(rng)

    def _new_network(self) -> Any:
        from rag_routing.routers.graph_network import GraphQualityNet

        return GraphQualityNet(self.memory_.features.shape[1], self.memory_.candidate_text.shape[1] + 1,
                               self.hidden, self.layers, self.heads, self.dropout)

    def _cold_mask(self, rng: np.random.Generator, n_context: int) -> np.ndarray | None:
        """Outcomes hidden at a training step: with probability ``cold_start``, all of one candidate's (half the
        time) or all but a random 0-10 % (the other half), as for a candidate added with or without anchors."""
        m = len(self.candidates_)
        if m < 2 or rng.random() >= self.cold_start:
            return None
        hide = np.zeros((n_context, m), dtype=bool)
        keep = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, MAX_ANCHOR_SHARE)
        hide[:, rng.integers(m)] = rng.random(n_context) >= keep
        return hide

    def _loss(self, torch: Any, context: np.ndarray, targets: np.ndarray, hide: np.ndarray | None) -> Any:
        graph = self.memory_.build(context, self._targets(targets), self.k_neighbours, hide)
        logits = self.network_(graph, torch.arange(len(context), len(context) + len(targets)))
        y = torch.as_tensor(self.memory_.quality[targets])
        seen = ~torch.isnan(y)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[seen], y[seen])

    def _train(self, rng: np.random.Generator) -> None:
        import torch

        train, val = inner_split(len(self.memory_.features), self.val_fraction, rng)
        n_context = min(len(train) - 1, max(1, int(round(self.context_fraction * len(train)))))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.network_ = self._new_network()
            optimiser = torch.optim.AdamW(self.network_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            stopper = EarlyStopping(self.patience, lambda: copy.deepcopy(self.network_.state_dict()))
            for step in range(self.steps + 1):
                if step:
                    self.network_.train()
                    order = rng.permutation(train)
                    hide = self._cold_mask(rng, n_context)
                    loss = self._loss(torch, np.sort(order[:n_context]), order[n_context:], hide)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                if len(val) == 0 or (step % self.eval_every and step != self.steps):
                    continue
                self.network_.eval()
                with torch.no_grad():
                    value = float(self._loss(torch, train, val, None))
                if stopper.update(value):
                    break
            self.history_ = stopper.history
        if stopper.best_state is not None:
            self.network_.load_state_dict(stopper.best_state)
        self.network_.eval()

    # ------------------------------------------------------------------ prediction
    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        import torch

        assert features is not None
        F = normalise_rows(features)
        if F.shape[1] != self.memory_.features.shape[1]:
            raise InvalidInputError(f"features have {F.shape[1]} dimensions; the router was fitted on "
                                    f"{self.memory_.features.shape[1]}")
        tasks = self._task_of(F, X)
        context = np.arange(len(self.memory_.features))
        low, high = self.quality_range_
        out = []
        for s in range(0, len(F), PREDICT_BATCH):
            block = F[s:s + PREDICT_BATCH]
            nbr, sims = top_similar(block, self.memory_.features, self.k_neighbours)
            graph = self.memory_.build(context, (block, tasks[s:s + PREDICT_BATCH], nbr, sims), self.k_neighbours)
            with torch.no_grad():
                logits = self.network_(graph, torch.arange(len(context), len(context) + len(block)))
            out.append(low + torch.sigmoid(logits).numpy().astype(np.float64) * (high - low))
        return np.vstack(out) if out else np.zeros((0, len(self.candidates_)))

    # ------------------------------------------------------------------ the candidate pool
    def add_candidate(self, name: str, outcomes: Sequence[float] | np.ndarray | None = None,
                      queries_or_features: RouterInput | None = None, *, description: str | None = None,
                      cost: float) -> GraphRouter:
        """Add candidate ``name`` without retraining: a candidate node from its one-line ``description``
        (default: ``descriptions=`` or the shipped table) and ``cost`` (expected US $ per call).

        Without ``outcomes`` the node has no outcome edges and is scored like the candidates hidden during
        training, from its description, price and task context alone. With ``outcomes`` (NaN = unknown) measured on
        ``queries_or_features`` (a few anchor queries, as for :func:`rag_routing.pool.profile_candidate`), those
        queries join the graph with an outcome edge to the new node only (GraphRouter's few-shot new-LLM
        setting). Returns ``self``.
        """
        self._check_fitted()
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError("candidate name must be a non-empty string")
        if name in self.candidates_:
            raise InvalidInputError(f"candidate {name!r} already exists; remove_candidate({name!r}) first")
        cost = check_float("cost", cost)
        if description is None:
            description = describe(name, self.descriptions)
            if description is None:
                raise MissingDescriptionError(f"no description for new candidate {name!r}; pass "
                                              "add_candidate(name, description='provider, family, size, what it is "
                                              "tuned for', cost=...)")
        elif not isinstance(description, str) or not description.strip():
            raise InvalidInputError(f"the description of {name!r} must be a non-empty string")
        anchors = None if outcomes is None else self._anchors(outcomes, queries_or_features)
        z = float(self._log_cost_z(cost))
        self.memory_.add_candidate(self._embed_descriptions([description])[0], z)
        if anchors is not None:
            F, tasks, y = anchors
            rows = np.full((len(y), len(self.candidates_) + 1), np.nan, dtype=np.float32)
            rows[:, -1] = y
            self.memory_.add_queries(F, tasks, rows, np.full(rows.shape, z, dtype=np.float32))
        self.descriptions_[name] = description
        self.candidates_ = [*self.candidates_, name]
        self.mean_cost_ = np.append(self.mean_cost_, cost)
        return self

    def _anchors(self, outcomes: Sequence[float] | np.ndarray, queries_or_features: RouterInput | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, tasks, scaled outcomes) of the anchor queries with a known outcome, checked."""
        try:
            y = np.asarray(outcomes, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise InvalidInputError("outcomes must be numbers (NaN = unknown)") from None
        if np.isinf(y).any() or np.isnan(y).all():
            raise InvalidInputError("outcomes must be finite, with at least one known (non-NaN) value")
        if queries_or_features is None:
            raise InvalidInputError("outcomes need the queries (or features) they were measured on")
        F = normalise_rows(self.features(queries_or_features))
        if len(F) != len(y):
            raise InvalidInputError(f"{len(y)} outcomes for {len(F)} queries")
        if F.shape[1] != self.memory_.features.shape[1]:
            raise InvalidInputError(f"features have {F.shape[1]} dimensions; the router was fitted on "
                                    f"{self.memory_.features.shape[1]}")
        low, high = self.quality_range_
        keep = ~np.isnan(y)
        scaled = np.clip((y[keep] - low) / (high - low), 0.0, 1.0).astype(np.float32)
        return F[keep], self._task_of(F, queries_or_features)[keep], scaled

    def remove_candidate(self, name: str) -> GraphRouter:
        """Drop candidate ``name`` (its node and its outcome edges). Returns ``self``."""
        j = self._removable_position(name)
        self.memory_.drop_candidate(j)
        del self.descriptions_[name]
        self.candidates_ = [c for c in self.candidates_ if c != name]
        self.mean_cost_ = np.delete(self.mean_cost_, j)
        return self

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"graph.{k}": v for k, v in self.memory_.arrays().items()}
        arrays.update({f"net.{k}": v.detach().numpy().copy() for k, v in self.network_.state_dict().items()})
        config = {"network": self.network_.config, "descriptions": [self.descriptions_[c] for c in self.candidates_],
                  "task_key": self.task_key_, "task_names": self.task_names_,
                  "quality_range": list(self.quality_range_), "log_cost_stats": list(self.log_cost_stats_),
                  "history": self.history_}
        return config, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        import torch

        from rag_routing.routers.graph_network import GraphQualityNet

        m = len(self.candidates_)
        self.memory_ = GraphMemory.from_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("graph.")}, m)
        texts = [str(d) for d in config["descriptions"]]
        self.task_names_ = [str(t) for t in config["task_names"]]
        if len(texts) != m or len(self.task_names_) != len(self.memory_.task_centroids):
            raise CorruptStateError("saved descriptions or task names do not match the saved graph")
        self.descriptions_ = dict(zip(self.candidates_, texts))
        self.task_key_ = None if config["task_key"] is None else str(config["task_key"])
        low, high = (float(v) for v in config["quality_range"])
        mean, std = (float(v) for v in config["log_cost_stats"])
        self.quality_range_, self.log_cost_stats_ = (low, high), (mean, std)
        self.history_ = [float(v) for v in config.get("history", [])]
        self.network_ = GraphQualityNet(**config["network"])
        state = {k[4:]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()
                 if k.startswith("net.")}
        try:
            self.network_.load_state_dict(state)
        except RuntimeError as exc:
            raise CorruptStateError(f"saved network weights do not fit the saved network shape ({exc})") from exc
        if self.network_.config["query_dim"] != self.memory_.features.shape[1]:
            raise CorruptStateError("saved network and saved query features have different widths")
        self.network_.eval()


__all__ = ["GraphRouter"]
