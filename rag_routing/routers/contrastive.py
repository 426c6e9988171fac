"""`ContrastiveRouter`: RouterDC's dual contrastive learning (Chen et al. 2024, "RouterDC: Query-based router by
dual contrastive learning for assembling large language models"; survey §4.2.4).

A query encoder ``E`` (MiniLM, fine-tuned) and one learnable embedding ``k_m`` per candidate are trained so that
``sim(x, m) = cos(E(x), k_m)`` is high for the candidates that answer ``x`` best:

* **sample-candidate loss** — for each query, each of its ``top_k`` best candidates is a positive against its
  ``bottom_k`` worst: ``-log(e^{sim(x,m+)/τ} / (e^{sim(x,m+)/τ} + Σ_{m-} e^{sim(x,m-)/τ}))``;
* **sample-sample loss** — training queries are clustered (k-means on the frozen encoder's vectors) and, inside
  each batch, queries of the same cluster are pulled together and others pushed away (supervised InfoNCE over
  the batch; RouterDC samples one positive and several negatives per query — the in-batch form is its
  vectorised equivalent), which keeps the encoder from collapsing and stabilises training.

Quality estimate: ``softmax(sim(x, ·) / τ)`` over candidates, so the shared rule's argmax at λ = 0 is RouterDC's
own choice. Weights (encoder and candidate embeddings) are saved as arrays; torch loads lazily.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.routers.early_stopping import EarlyStopping
from rag_routing.routers.encoder import (
    arrays_to_module,
    build_encoder,
    encoder_config_dict,
    encoder_from_config,
    mean_pool,
    module_to_arrays,
)
from rag_routing.validation import check_float, check_int


class ContrastiveRouter(Router):
    """RouterDC (Chen et al. 2024): a fine-tuned query encoder and per-candidate embeddings trained with a
    sample-candidate and a sample-sample contrastive loss; estimates each candidate's probability of being among
    the best for the query (``softmax`` of cosine similarities). See the module docstring.

    Parameters:
        top_k, bottom_k: positives and negatives per query in the sample-candidate loss.
        temperature: τ of both losses and of the predicted softmax.
        n_clusters: k-means clusters of the sample-sample loss; sample_weight: its weight (0 = off).
        epochs, patience, lr, head_lr, batch_size, max_seq_length, val_fraction, max_train, encoder_config,
            seed: as for :class:`~rag_routing.routers.encoder.EncoderClassifierRouter` (``head_lr`` is the
            candidate embeddings' learning rate).
        **kwargs: ``lam``, ``budget``, ``fallback`` (see :class:`Router`); the router reads text itself.

    Example:
        >>> ds = RoutingDataset(["integral of x", "hello friend"] * 4, ["small", "large"], [[0, 1], [1, 0]] * 4,
        ...                     [[0.001, 0.02]] * 8)
        >>> tiny = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
        >>> router = ContrastiveRouter(encoder_config=tiny, top_k=1, bottom_k=1, n_clusters=2, epochs=30, lr=1e-2,
        ...                            head_lr=1e-2, patience=30).fit(ds)
        >>> router.route_indices(["integral of x", "hello friend"]).tolist()
        [1, 0]
    """

    name = "contrastive"
    in_bench_all = False
    uses_features = False

    def __init__(self, *, top_k: int = 3, bottom_k: int = 3, temperature: float = 0.2, n_clusters: int = 5,
                 sample_weight: float = 1.0, epochs: int = 3, patience: int = 1, lr: float = 3e-5,
                 head_lr: float = 1e-2, batch_size: int = 32, max_seq_length: int = 128, val_fraction: float = 0.1,
                 max_train: int | None = None, encoder_config: dict[str, Any] | None = None, seed: int = 0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.top_k = check_int("top_k", top_k)
        self.bottom_k = check_int("bottom_k", bottom_k)
        self.temperature = check_float("temperature", temperature, open_low=True)
        self.n_clusters = check_int("n_clusters", n_clusters)
        self.sample_weight = check_float("sample_weight", sample_weight)
        self.epochs = check_int("epochs", epochs)
        self.patience = check_int("patience", patience)
        self.lr = check_float("lr", lr, open_low=True)
        self.head_lr = check_float("head_lr", head_lr, open_low=True)
        self.batch_size = check_int("batch_size", batch_size, low=2)
        self.max_seq_length = check_int("max_seq_length", max_seq_length, low=8)
        self.val_fraction = check_float("val_fraction", val_fraction, 0.0, 0.5)
        self.max_train = None if max_train is None else check_int("max_train", max_train, low=2)
        if encoder_config is not None and not isinstance(encoder_config, dict):
            raise InvalidInputError("encoder_config must be a dict of BertConfig fields or None")
        self.encoder_config = encoder_config
        self.seed = check_int("seed", seed, low=0)

    # ------------------------------------------------------------------ training
    def _pairs(self, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: positive and negative candidate indices (-1 = unused slot) and whether the query is usable
        (at least one known candidate strictly better than another)."""
        m = quality.shape[1]
        k_pos, k_neg = min(self.top_k, m - 1), min(self.bottom_k, m - 1)
        pos = np.full((len(quality), k_pos), -1)
        neg = np.full((len(quality), k_neg), -1)
        for i, row in enumerate(quality):
            known = np.flatnonzero(~np.isnan(row))
            order = known[np.argsort(-row[known], kind="stable")]
            top, bottom = order[:k_pos], order[::-1][:k_neg]
            top = top[row[top] > row[order[-1]]] if len(order) else top
            bottom = bottom[row[bottom] < row[order[0]]] if len(order) else bottom
            pos[i, : len(top)], neg[i, : len(bottom)] = top, bottom
        usable = (pos[:, 0] >= 0) & (neg[:, 0] >= 0)
        return pos, neg, usable

    def _clusters(self, queries: list[str]) -> np.ndarray:
        import torch
        from sklearn.cluster import KMeans

        with torch.no_grad():
            Z = np.vstack([self._encode(queries[s:s + 64]).numpy() for s in range(0, len(queries), 64)])
        k = min(self.n_clusters, len(np.unique(Z.round(6), axis=0)))
        return KMeans(n_clusters=k, random_state=self.seed, n_init=3).fit_predict(Z).astype(np.int64)

    def _losses(self, torch: Any, texts: list[str], pos: Any, neg: Any, clusters: Any) -> Any:
        z = self._encode(texts)
        sims = z @ torch.nn.functional.normalize(self.candidate_embeddings_, dim=1).T / self.temperature
        pos_s = torch.where(pos >= 0, sims.gather(1, pos.clamp(min=0)), torch.tensor(-torch.inf))
        neg_s = torch.where(neg >= 0, sims.gather(1, neg.clamp(min=0)), torch.tensor(-torch.inf))
        neg_lse = torch.logsumexp(neg_s, dim=1, keepdim=True)
        per_pos = -(pos_s - torch.logaddexp(pos_s, neg_lse))
        loss = per_pos[pos >= 0].mean()
        if self.sample_weight > 0 and len(texts) > 1:
            zz = z @ z.T / self.temperature
            eye = torch.eye(len(texts), dtype=torch.bool)
            zz = zz.masked_fill(eye, -torch.inf)
            same = (clusters[:, None] == clusters[None, :]) & ~eye
            has = same.any(1)
            if has.any():
                log_p = zz - torch.logsumexp(zz, dim=1, keepdim=True)
                ss = -torch.logsumexp(log_p.masked_fill(~same, -torch.inf), dim=1)[has].mean()
                loss = loss + self.sample_weight * ss
        return loss

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        import torch

        pos, neg, usable = self._pairs(dataset.quality)
        rows = np.random.default_rng(self.seed).permutation(np.flatnonzero(usable))
        if self.max_train is not None:
            rows = rows[: self.max_train]
        if rows.size < 2:
            raise InvalidInputError("need at least 2 queries where some candidate beats another to train RouterDC")
        n_val = max(1, int(round(self.val_fraction * len(rows)))) if self.val_fraction > 0 else 0
        val, train = rows[:n_val], rows[n_val:]
        self.tokenizer_, self.encoder_ = build_encoder(self.encoder_config, self.seed)
        torch.manual_seed(self.seed)
        dim = self.encoder_.config.hidden_size
        self.candidate_embeddings_ = torch.nn.Parameter(torch.randn(len(self.candidates_), dim) / math.sqrt(dim))
        queries = dataset.queries
        clusters = torch.as_tensor(np.full(len(queries), -1, dtype=np.int64))
        self.encoder_.eval()
        clusters[rows] = torch.as_tensor(self._clusters([queries[i] for i in rows]))
        P, N = torch.as_tensor(pos), torch.as_tensor(neg)
        optimiser = torch.optim.AdamW([{"params": self.encoder_.parameters(), "lr": self.lr},
                                       {"params": [self.candidate_embeddings_], "lr": self.head_lr}])
        stopper = EarlyStopping(self.patience, lambda: (copy.deepcopy(self.encoder_.state_dict()),
                                                        self.candidate_embeddings_.detach().clone()))
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            self.encoder_.train()
            order = train[torch.randperm(len(train), generator=gen).numpy()]
            for s in range(0, len(order), self.batch_size):
                idx = torch.as_tensor(order[s:s + self.batch_size])
                loss = self._losses(torch, [queries[i] for i in idx.tolist()], P[idx], N[idx], clusters[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if n_val == 0:
                continue
            with torch.no_grad():
                self.encoder_.eval()
                idx = torch.as_tensor(val)
                v = float(self._losses(torch, [queries[i] for i in val.tolist()], P[idx], N[idx], clusters[idx]))
            if stopper.update(v):
                break
        self.history_ = stopper.history
        if stopper.best_state is not None:
            self.encoder_.load_state_dict(stopper.best_state[0])
            self.candidate_embeddings_ = torch.nn.Parameter(stopper.best_state[1])
        self.encoder_.eval()

    def _encode(self, texts: list[str]) -> Any:
        import torch

        batch = self.tokenizer_(list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
                                return_tensors="pt")
        return torch.nn.functional.normalize(mean_pool(self.encoder_, dict(batch)), dim=1)

    # ------------------------------------------------------------------ prediction
    def similarities(self, X: RouterInput) -> np.ndarray:
        """``(n, m)`` cosine similarity of each query to each candidate embedding."""
        import torch

        self._check_fitted()
        if isinstance(X, np.ndarray):
            raise InvalidInputError("ContrastiveRouter reads query text; pass strings or a RoutingDataset")
        queries = list(X.queries) if isinstance(X, RoutingDataset) else validate_queries(X)
        K = torch.nn.functional.normalize(self.candidate_embeddings_.detach(), dim=1)
        with torch.no_grad():
            out = [(self._encode(queries[s:s + 64]) @ K.T).numpy() for s in range(0, len(queries), 64)]
        return np.vstack(out) if out else np.zeros((0, len(self.candidates_)))

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        logits = self.similarities(X) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        P = np.exp(logits)
        return P / P.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = module_to_arrays(self.encoder_, "encoder.")
        arrays["candidate_embeddings"] = self.candidate_embeddings_.detach().numpy().copy()
        return {"encoder": encoder_config_dict(self.encoder_), "history": self.history_}, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        import torch

        self.tokenizer_, self.encoder_ = encoder_from_config(config["encoder"])
        arrays_to_module(self.encoder_, arrays, "encoder.")
        self.encoder_.eval()
        K = np.asarray(arrays["candidate_embeddings"], dtype=np.float32)
        if K.shape != (len(self.candidates_), self.encoder_.config.hidden_size):
            raise ValueError(f"candidate embeddings of shape {K.shape} do not fit the saved candidates")
        self.candidate_embeddings_ = torch.nn.Parameter(torch.from_numpy(K))
        self.history_ = list(config.get("history", []))


__all__ = ["ContrastiveRouter"]
