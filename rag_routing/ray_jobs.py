"""Batch work on Ray, for logs that outgrow one process: featurising, labelling routing data, benchmarking.

The only module that imports Ray (``pip install 'rag-routing[ray]'``). It maps the library's own single-process
functions over a Ray cluster; nothing is re-implemented, so results are the same as the single-process path:

* :func:`featurize_on_ray`: a fitted featurizer's state (:meth:`get_state`) travels to ``n_workers`` Ray
  actors, each rebuilds it once (a MiniLM loads once per worker, not per chunk) and transforms chunks of the
  texts; rows come back in order. TF-IDF features are bit-identical to ``featurizer.transform``; a neural
  embedder's rows match to float rounding (batches are cut differently).
* :class:`RayCellExecutor`: plugs into :class:`~rag_routing.evaluation.labeling.RoutingDataBuilder`
  (``executor=``, or ``rag-routing label --ray``). Each batch's cells are split into chunks that Ray worker
  actors (started once, kept across batches) label with the builder's own :class:`~rag_routing.evaluation.labeling.CellLabeler` (same prompts, same
  scorer); answers, costs, qualities and every ledger entry come back to the builder, which stores and saves
  them as it does on its own. The workers' LLM calls share one budget: ``budget_factory`` builds each worker's
  :class:`~rag_routing.ledger.budget.Budget` on a shared store (Redis), so a call is refused *before* it runs
  whichever worker makes it. A budget on the driver's ledger would not be seen by the workers, so it is
  refused with a clear error instead of being silently ignored.
* :func:`run_benchmark_on_ray` (``rag-routing bench --ray``): the benchmark with each router's fit and λ sweep
  (:func:`~rag_routing.evaluation.benchmark.fit_and_score`) as a Ray task; the same report as one process.

Ray starts locally when no cluster is running (``address=None``); pass ``address="auto"`` or
``"ray://host:10001"`` to join one.

Example (starts a local Ray, ~15 s):
    >>> from rag_routing.embeddings import TfidfFeaturizer            # doctest: +SKIP
    >>> texts = [f"question number {i} about topic {i % 7}" for i in range(10_000)]   # doctest: +SKIP
    >>> tfidf = TfidfFeaturizer(n_components=32).fit(texts[:1000])    # doctest: +SKIP
    >>> (featurize_on_ray(texts, tfidf, n_workers=2) == tfidf.transform(texts)).all()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rag_routing.errors import BudgetExceededError, InvalidInputError, RagRoutingError, require
from rag_routing.evaluation.labeling import CellLabeler, LabelOutcome, RoutingDataBuilder
from rag_routing.ledger.budget import Budget
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import ledger_scope


class RayUnavailableError(RagRoutingError, ConnectionError):
    """Ray could not be started, or the cluster at the given address could not be joined; nothing ran."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def connect(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialised: joins ``address`` (``"auto"``, ``"ray://..."``) or starts a local Ray.

    An already initialised Ray is reused as it is."""
    ray = require("ray", "ray")
    if address is not None and (not isinstance(address, str) or not address):
        raise InvalidInputError(f"address must be a Ray address such as 'auto' or 'ray://host:10001', got {address!r}")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = num_cpus
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            where = "a local Ray" if address is None else f"the Ray cluster at {address!r}"
            raise RayUnavailableError(
                f"could not start or join {where} ({type(exc).__name__}: {exc}); check the address ('auto' joins "
                "the cluster started with `ray start` on this machine, 'ray://host:10001' a remote one and needs "
                "ray[client]), or leave it out to start a local Ray") from exc
    return ray


# -- featurising ------------------------------------------------------------------------------------------------
class _FeaturizerWorker:
    """A Ray actor holding one featurizer rebuilt from its state (heavy models load once per worker)."""

    def __init__(self, config: dict[str, Any], arrays: dict[str, np.ndarray]):
        from rag_routing.embeddings import featurizer_from_state

        self.featurizer = featurizer_from_state(config, arrays)

    def transform(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.featurizer.transform(texts))


def featurize_on_ray(texts: Sequence[str], featurizer: Any, *, n_workers: int = 2, chunk_size: int = 4096,
                     address: str | None = None) -> np.ndarray:
    """``featurizer.transform(texts)`` computed by ``n_workers`` Ray actors, chunk by chunk, rows in order.

    ``featurizer`` must be fitted and expose ``get_state()`` (every featurizer of :mod:`rag_routing.embeddings`
    does)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("texts must be a list of strings")
    _positive_int("n_workers", n_workers)
    _positive_int("chunk_size", chunk_size)
    if not callable(getattr(featurizer, "get_state", None)):
        raise InvalidInputError(f"featurizer must expose get_state() to travel to Ray workers, got "
                                f"{type(featurizer).__name__}")
    if not texts:
        return np.asarray(featurizer.transform([]))
    ray = connect(address)
    config, arrays = featurizer.get_state()
    worker = ray.remote(_FeaturizerWorker)
    actors = [worker.remote(config, arrays) for _ in range(min(n_workers, math.ceil(len(texts) / chunk_size)))]
    chunks = [list(texts[i:i + chunk_size]) for i in range(0, len(texts), chunk_size)]
    try:
        parts = ray.get([actors[k % len(actors)].transform.remote(chunk) for k, chunk in enumerate(chunks)])
    finally:
        for actor in actors:
            ray.kill(actor)
    return np.concatenate(parts, axis=0)


# -- benchmarking -----------------------------------------------------------------------------------------------
def _benchmark_row(job: Callable[[Any], Any], item: Any) -> Any:
    """One router's :func:`~rag_routing.evaluation.benchmark.fit_and_score` on a worker; a failure comes back as
    the exception itself (with its ``while fitting router`` note), for the driver to raise as one process would."""
    import pickle

    try:
        return job(item)
    except Exception as exc:
        try:
            pickle.dumps(exc)
            return exc
        except Exception:  # an exception that cannot travel: its text does
            failure = RagRoutingError(f"{type(exc).__name__}: {exc}")
            for note in getattr(exc, "__notes__", ()):
                failure.add_note(note)
            return failure


class _RebuiltFeaturizerJob:
    """A benchmark job whose featurizer cannot be pickled (a loaded MiniLM holds locks) travels as its state
    (:meth:`get_state`) and is rebuilt once per worker process, as :func:`featurize_on_ray` does."""

    _rebuilt: dict[str, Any] = {}  # per worker process (Ray reuses them across tasks): token -> featurizer

    def __init__(self, job: functools.partial, featurizer: Any):
        self.job = functools.partial(job.func, *job.args, **dict(job.keywords, featurizer=None))
        self.state, self.token = featurizer.get_state(), uuid.uuid4().hex

    def __call__(self, item: Any) -> Any:
        from rag_routing.embeddings import featurizer_from_state

        key = self.token
        if key not in self._rebuilt:
            self._rebuilt.clear()
            self._rebuilt[key] = featurizer_from_state(*self.state)
        return self.job(item, featurizer=self._rebuilt[key])


def _portable(ray: Any, job: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``job`` itself when it pickles; else with its featurizer sent as state (see :class:`_RebuiltFeaturizerJob`)."""
    featurizer = job.keywords.get("featurizer") if isinstance(job, functools.partial) else None
    if featurizer is None or not callable(getattr(featurizer, "get_state", None)):
        return job
    try:
        ray.cloudpickle.dumps(featurizer)
        return job
    except Exception:
        return _RebuiltFeaturizerJob(job, featurizer)


class _RayRouterMap:
    """A :data:`~rag_routing.evaluation.benchmark.RouterMap` running each router's job as one Ray task; the
    job (with the featurised train and test sets bound) is put in the object store once and shared."""

    def __init__(self, ray: Any, task_cpus: float):
        self.ray, self.task_cpus = ray, task_cpus

    def __call__(self, job: Callable[[Any], Any], items: Sequence[Any], progress: bool) -> list[Any]:
        ray = self.ray
        shared = ray.put(_portable(ray, job))
        task = ray.remote(num_cpus=self.task_cpus, max_retries=0)(_benchmark_row)
        refs = [task.remote(shared, item) for item in items]
        if progress:
            from tqdm.auto import tqdm

            pending = list(refs)
            with tqdm(total=len(refs), desc="fitting and scoring routers on Ray", unit="router") as bar:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    bar.update(len(done))
        rows = ray.get(refs)
        for row in rows:  # in the table's order: the first failing router is the one one process reports
            if isinstance(row, BaseException):
                raise row
        return rows


def run_benchmark_on_ray(train: Any, test: Any, routers: Sequence[Any] = (), *, address: str | None = None,
                         task_cpus: float = 1.0, **options: Any) -> Any:
    """:func:`~rag_routing.evaluation.benchmark.run_benchmark` with each router's fit and λ sweep run as a Ray
    task (the features are computed once, here, and shared through Ray's object store).

    ``options`` are :func:`run_benchmark`'s (``embedder``, ``seed``, ``n_lambdas``, ``router_params``,
    ``progress``). The report is the same as one process's for the same seed, timings aside; a router that
    fails raises the same exception, with the same ``while fitting router`` note. A :class:`Router` object
    in ``routers`` is fitted on a worker, on a copy: the object passed in stays unfitted.

    Raises :class:`~rag_routing.errors.MissingDependencyError` without Ray, :class:`RayUnavailableError`
    when Ray cannot start or ``address`` cannot be joined; both before any work starts."""
    from rag_routing.evaluation.benchmark import run_benchmark

    if isinstance(task_cpus, bool) or not isinstance(task_cpus, (int, float)) or not 0 < task_cpus <= 64:
        raise InvalidInputError(f"task_cpus must be a number in (0, 64], got {task_cpus!r}")
    if "map_routers" in options:
        raise InvalidInputError("run_benchmark_on_ray maps the routers itself; do not pass map_routers")
    ray = connect(address)
    return run_benchmark(train, test, routers, map_routers=_RayRouterMap(ray, float(task_cpus)), **options)


# -- labelling --------------------------------------------------------------------------------------------------
Payload = tuple[int, int, str, str, Any, "str | None", float]


class _LabelWorker:
    """A Ray actor that labels chunks of cells with the builder's labeler, in ledgers on one shared budget."""

    def __init__(self, labeler: CellLabeler, budget_factory: Callable[[], Budget] | None):
        self.labeler = labeler
        self.budget = None if budget_factory is None else budget_factory()

    def ready(self) -> bool:
        return True

    def label(self, cells: list[Payload]) -> tuple[list[dict[str, Any]], list[Any]]:
        ledger = CostLedger(budget=self.budget)
        results: list[dict[str, Any]] = []
        with ledger_scope(ledger):
            for i, j, query, candidate, references, answer, cost in cells:
                row: dict[str, Any] = {"i": i, "j": j, "answer": answer, "cost": cost, "generated": False,
                                       "quality": None, "judge_usd": 0.0, "error": None, "refused": None}
                try:
                    if answer is None:
                        row["answer"], row["cost"] = self.labeler.generate(query, candidate)
                        row["generated"] = True
                    row["quality"], row["judge_usd"] = self.labeler.score(ledger, query, row["answer"], references)
                except BudgetExceededError as exc:
                    row["refused"] = str(exc)
                    results.append(row)
                    break
                except Exception as exc:  # reported to the builder, which raises or skips as its on_error says
                    row["error"] = f"{type(exc).__name__}: {exc}"
                results.append(row)
        return results, list(ledger.entries)


class SharedRedisBudget:
    """A picklable ``budget_factory``: each call builds a session :class:`Budget` on one Redis key, so every Ray
    worker reserves from, and charges, the same amounts (atomically, in Redis).

    Example:
        >>> factory = SharedRedisBudget("redis://127.0.0.1:6379/0", key="labels-2026-12", max_usd=5.0)
        >>> factory.key, factory.limits
        ('labels-2026-12', {'max_usd': 5.0})
    """

    def __init__(self, url: str, *, key: str, store_options: dict[str, Any] | None = None, **limits: float):
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInputError("url must be a redis://, rediss:// or unix:// URL")
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"key must be a non-empty string, got {key!r}")
        unknown = sorted(set(limits) - {"max_usd", "max_tokens", "max_seconds", "max_kwh"})
        if unknown:
            raise InvalidInputError(f"unknown budget limits {unknown}; use max_usd, max_tokens, max_seconds, max_kwh")
        self.url, self.key, self.limits, self.store_options = url, key, dict(limits), dict(store_options or {})

    def __call__(self) -> Budget:
        from rag_routing.ledger.redis_budget_store import RedisBudgetStore

        store = RedisBudgetStore(self.url, **self.store_options)
        return Budget(scope="session", key=self.key, store=store, **self.limits)

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"SharedRedisBudget(key={self.key!r}, limits={self.limits})"


class RayCellExecutor:
    """Label a batch's cells on Ray workers (see the module docstring).

    Parameters:
        address: the Ray cluster (``None``: the running one, or a new local Ray).
        chunk_size: cells per Ray task (a worker labels them in order).
        budget_factory: a picklable callable that builds each worker's :class:`Budget` on a shared store
            (:class:`SharedRedisBudget`); ``None``: the workers' calls are metered but not budgeted.
        workers: Ray actors labelling at once (each keeps the labeler and one connection to the shared budget,
            across batches, until :meth:`close`).
        task_cpus: CPUs Ray reserves per worker: 1 for candidates that compute here (a local model); a fraction
            (e.g. 0.1) for remote APIs, whose calls mostly wait, so more workers fit on the same CPUs.
    """

    def __init__(self, address: str | None = None, *, chunk_size: int = 8,
                 budget_factory: Callable[[], Budget] | None = None, workers: int = 2, task_cpus: float = 1.0):
        _positive_int("chunk_size", chunk_size)
        _positive_int("workers", workers)
        if budget_factory is not None and not callable(budget_factory):
            raise InvalidInputError("budget_factory must be a callable that returns a Budget")
        if isinstance(task_cpus, bool) or not isinstance(task_cpus, (int, float)) or not 0 < task_cpus <= 64:
            raise InvalidInputError(f"task_cpus must be a number in (0, 64], got {task_cpus!r}")
        self.address, self.chunk_size, self.budget_factory = address, chunk_size, budget_factory
        self.workers, self.task_cpus = workers, float(task_cpus)
        self._actors: list[Any] = []
        self._labeler: CellLabeler | None = None

    def _pool(self, ray: Any, labeler: CellLabeler) -> list[Any]:
        """The worker actors, started once and kept across batches (a new builder's labeler restarts them)."""
        if self._actors and self._labeler is not labeler:
            self.close()
        if not self._actors:
            worker = ray.remote(num_cpus=self.task_cpus)(_LabelWorker)
            shared = ray.put(labeler)
            self._actors = [worker.remote(shared, self.budget_factory) for _ in range(self.workers)]
            self._labeler = labeler
        return self._actors

    def start(self, builder: RoutingDataBuilder) -> RayCellExecutor:
        """Start the worker actors for ``builder`` now and wait until each is up (otherwise the first batch
        starts them: worker processes take seconds to import the library)."""
        ray = connect(self.address)
        ray.get([actor.ready.remote() for actor in self._pool(ray, builder.labeler)])
        return self

    def close(self) -> None:
        """Stop the worker actors (they also stop with the Ray session)."""
        if self._actors:
            ray = require("ray", "ray")
            for actor in self._actors:
                ray.kill(actor)
        self._actors, self._labeler = [], None

    def label_cells(self, builder: RoutingDataBuilder, ledger: CostLedger,
                    cells: list[tuple[int, int]]) -> list[LabelOutcome]:
        """Label ``cells`` of ``builder`` on Ray; store the results in the builder and the entries in ``ledger``."""
        if ledger.budget is not None:
            raise InvalidInputError(
                "on Ray the labelling calls run in worker processes, which cannot see a budget on this process's "
                "ledger; pass RayCellExecutor(budget_factory=...) that builds a Budget on a shared store (Redis) "
                "and leave the ledger without one")
        if not cells:
            return []
        ray = connect(self.address)
        actors = self._pool(ray, builder.labeler)
        payloads = [builder.cell_payload(i, j) for i, j in cells]
        chunks = [payloads[k:k + self.chunk_size] for k in range(0, len(payloads), self.chunk_size)]
        answers = ray.get([actors[k % len(actors)].label.remote(chunk) for k, chunk in enumerate(chunks)])
        outcomes: list[LabelOutcome] = []
        refused, failure = None, None
        for results, entries in answers:  # chunk order: the same table and ledger order on every run
            for entry in entries:
                ledger.add_entry(entry)
            for row in results:
                i, j = row["i"], row["j"]
                if row["generated"]:
                    builder.store_answer(i, j, row["answer"], row["cost"])
                if row["refused"] is not None:
                    refused = refused or row["refused"]
                elif row["error"] is not None:
                    failure = failure or (i, j, row["error"])
                    if builder.on_error == "skip":
                        builder.cell_failed(i, j, RagRoutingError(row["error"]))
                else:
                    outcomes.append(builder.store_quality(i, j, row["quality"], row["judge_usd"]))
        if failure is not None and builder.on_error == "raise":
            i, j, error = failure
            raise RagRoutingError(f"labelling query {i} with {builder.dataset.candidates[j]!r} failed on a Ray "
                                  f"worker: {error}")
        if refused is not None:
            raise BudgetExceededError(refused)
        return outcomes

    def __repr__(self) -> str:
        return (f"RayCellExecutor(address={self.address!r}, chunk_size={self.chunk_size}, workers={self.workers}, "
                f"task_cpus={self.task_cpus:g})")


__all__ = ["connect", "featurize_on_ray", "run_benchmark_on_ray", "RayCellExecutor", "RayUnavailableError",
           "SharedRedisBudget"]
