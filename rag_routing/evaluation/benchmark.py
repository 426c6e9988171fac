"""The benchmark runner: load -> split -> featurize once -> fit every router -> sweep -> report.

The query features are computed once (the offline MiniLM embedder through its on-disk cache by default,
``embedder="tfidf"`` for no torch) and attached to both datasets with
:meth:`~rag_routing.evaluation.dataset.RoutingDataset.with_embeddings`; every router is built with that
featurizer, so none re-embeds. The baselines (``random``, ``oracle``, ``best``, ``fixed``, ``cheapest``) and every
single candidate are always in the table. Router names are checked before any work starts. Several training
files are read as the union of their rows (RouterDC's leave-one-task-out protocol: train on the other tasks).

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> rng = np.random.default_rng(0)
    >>> ds = RoutingDataset([f"q{i}" for i in range(40)], ["small", "large"],
    ...                     (rng.random((40, 2)) < [0.6, 0.8]).astype(float), np.tile([0.001, 0.01], (40, 1)))
    >>> train, test = ds.train_test_split(0.5, seed=0)
    >>> report = run_benchmark(train, test, progress=False)
    >>> [r.router for r in report.results]
    ['oracle', 'random', 'best', 'fixed', 'cheapest', 'small', 'large']
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.embeddings import make_featurizer
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders import load_dataset
from rag_routing.evaluation.report import BenchmarkReport, RouterResult
from rag_routing.evaluation.scorecard import Reference, evaluate_router, evaluate_single
from rag_routing.evaluation.sweep import DEFAULT_N_LAMBDAS
from rag_routing.routers.base import Router
from rag_routing.routers.registry import available_routers, get_router_class

#: Baselines in every table, in this order.
BASELINES: tuple[str, ...] = ("oracle", "random", "best", "fixed", "cheapest")

#: Rows embedded per progress-bar step.
EMBED_BATCH = 512

#: ``map_routers(job, items, progress) -> [job(item) for item in items]``: how :func:`run_benchmark` runs the
#: per-router jobs (:func:`fit_and_score` with the data bound).
RouterMap = Callable[[Callable[[Any], RouterResult], Sequence[Any], bool], Sequence[RouterResult]]


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def router_class(name: str) -> type[Router]:
    """The class registered as ``name``, or :class:`InvalidInputError` saying why it cannot be used."""
    try:
        klass = get_router_class(name)
    except ImportError as exc:
        raise InvalidInputError(f"router {name!r} is registered but cannot be imported ({exc}); "
                                f"choose another of: {', '.join(available_routers())}") from exc
    if not (isinstance(klass, type) and issubclass(klass, Router)):
        raise InvalidInputError(f"{name!r} is registered as {klass!r}, which is not a Router")
    return klass


def _usable(name: str) -> bool:
    try:
        router_class(name)
    except InvalidInputError:
        return False
    return True


def resolve_routers(routers: Sequence[str | Router]) -> list[str | Router]:
    """The routers to run: ``routers`` (names checked now), then the baselines not already listed.

    ``"all"`` stands for every registered router that imports, is a :class:`Router` and does not opt out with
    ``in_bench_all = False`` (routers that fine-tune an encoder: name them explicitly); a name given
    explicitly that cannot be used is an :class:`InvalidInputError`.
    """
    resolved: list[str | Router] = []
    names: list[str | Router] = []
    for item in routers:
        if isinstance(item, str) and item.strip() == "all":
            names += [n for n in available_routers()
                      if n not in BASELINES and _usable(n) and getattr(router_class(n), "in_bench_all", True)]
        else:
            names.append(item)
    for item in names:
        if isinstance(item, Router):
            resolved.append(item)
            continue
        name = str(item).strip()
        if not name:
            continue
        router_class(name)
        if name not in resolved:
            resolved.append(name)
    return resolved + [b for b in BASELINES if b not in resolved]


def load_split(data: str | Path | None = None, *, fmt: str | None = None,
               train: str | Path | Sequence[str | Path] | None = None, test: str | Path | None = None,
               test_size: float = 0.5, seed: int = 0, output_tokens: int | None = None,
               price_table: Any = None) -> tuple[RoutingDataset, RoutingDataset]:
    """Train and test sets: ``data`` split at random, or the ``train`` file(s) and the ``test`` file as given.

    Several ``train`` files are read as the union of their rows, in the candidates of the first (each must
    hold them all).
    """
    options = {"output_tokens": output_tokens, "price_table": price_table}
    if isinstance(train, (list, tuple)) and not train:
        train = None
    if train is not None or test is not None:
        if train is None or test is None or data is not None:
            raise InvalidInputError("pass either DATA (split at random) or both --train and --test, not a mix")
        files = list(train) if isinstance(train, (list, tuple)) else [train]
        train_set = load_dataset(files[0], fmt, **options)
        for more in files[1:]:
            train_set = train_set.concat(load_dataset(more, fmt, **options))
        test_set = load_dataset(test, fmt, **options).select_candidates(train_set.candidates)
        return train_set, test_set
    if data is None:
        raise InvalidInputError("no data: pass a data file or folder, or --train and --test")
    return load_dataset(data, fmt, **options).train_test_split(test_size=test_size, seed=seed)


def embed(featurizer: Any, texts: Sequence[str], progress: bool, desc: str) -> np.ndarray:
    """``featurizer.transform`` in batches, with a progress bar."""
    starts = range(0, len(texts), EMBED_BATCH)
    bar = _progress(starts, progress, desc=desc, unit="batch", total=len(starts))
    blocks = [featurizer.transform(list(texts[i:i + EMBED_BATCH])) for i in bar]
    return np.vstack(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)


def featurize(train: RoutingDataset, test: RoutingDataset, embedder: Any = "minilm",
              progress: bool = True) -> tuple[RoutingDataset, RoutingDataset, Any]:
    """Fit ``embedder`` on the train queries, embed both sets once and attach the vectors to them."""
    featurizer = make_featurizer(embedder)
    featurizer.fit(train.queries)
    train_vectors = embed(featurizer, train.queries, progress, f"embedding train ({featurizer.name})")
    test_vectors = embed(featurizer, test.queries, progress, f"embedding test ({featurizer.name})")
    return (train.with_embeddings(train_vectors, featurizer.name),
            test.with_embeddings(test_vectors, featurizer.name), featurizer)


def build_router(item: str | Router, featurizer: Any, seed: int, params: Mapping[str, Any] | None = None) -> Router:
    """An unfitted router: ``item`` itself, or the class registered under that name with the shared
    featurizer and ``seed`` (when its constructor takes one)."""
    if isinstance(item, Router):
        return item
    klass = router_class(item)
    kwargs = dict(params or {})
    accepted = inspect.signature(klass.__init__).parameters
    if (klass.uses_features or getattr(klass, "shares_featurizer", False)) and featurizer is not None:
        kwargs.setdefault("featurizer", featurizer)
    if "seed" in accepted:
        kwargs.setdefault("seed", seed)
    return klass(**kwargs)


def _name(item: str | Router) -> str:
    return item if isinstance(item, str) else item.name


def fit_and_score(item: str | Router, *, train: RoutingDataset, test: RoutingDataset, ref: Reference,
                  featurizer: Any, seed: int, router_params: Mapping[str, Mapping[str, Any]], n_lambdas: int
                  ) -> RouterResult:
    """One row of the table: build ``item``, fit it on ``train`` and score it over the λ grid on ``test``.

    The per-router job of :func:`run_benchmark`, whichever way the rows are mapped (one process, or Ray tasks
    with :func:`rag_routing.ray_jobs.run_benchmark_on_ray`). A failing fit raises with the note
    ``while fitting router 'name'``."""
    router = build_router(item, featurizer, seed, router_params.get(_name(item)))
    started = time.perf_counter()
    try:
        router.fit(train)
    except Exception as exc:
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(f"while fitting router {_name(item)!r}")
        raise
    fit_seconds = time.perf_counter() - started
    kind = "baseline" if isinstance(item, str) and item in BASELINES else "router"
    result = evaluate_router(router, test, ref, name=_name(item), kind=kind, n_lambdas=n_lambdas)
    result.fit_seconds = fit_seconds
    if callable(getattr(router, "explain", None)):
        result.explain = router.explain()
    result.out_of_support = out_of_support_share(router, test)
    return result


def out_of_support_share(router: Router, test: RoutingDataset) -> float | None:
    """Share of ``test`` queries the router flags as outside its training support (:meth:`Router.support`'s
    conformal p-value below the router's ``alpha``), or ``None`` when it has no support estimate."""
    if not callable(getattr(router, "support", None)) or not callable(getattr(router, "out_of_support", None)):
        return None
    try:
        p = np.asarray(router.support(test), dtype=np.float64)
        if p.shape != (len(test),) or np.isnan(p).all():
            return None
        return float(np.asarray(router.out_of_support(test), dtype=bool).mean())
    except (InvalidInputError, NotImplementedError, ValueError):  # routers that cannot featurize the test set
        return None


def _notes(ref: Reference) -> list[str]:
    notes = ["quality of a chosen candidate with an unknown outcome (NaN) is left out of that point's mean",
             f"best_single ({ref.best_single}) is the candidate with the best mean test quality; when several tie, "
             "the cheapest of them; saving_vs_best_single is a fraction of its mean cost",
             "fixed: for each λ the single candidate with the best training-mean quality - λ·cost, evaluated on "
             "the test set (the floor for a router without per-query signal)",
             "AIQ integrates the non-decreasing hull over the single candidates' mean-cost range; below a "
             "router's cheapest operating point the hull counts as 0"]
    lo, hi = ref.cost_range
    if hi - lo <= 1e-9 * max(hi, 1e-300):
        notes.append("all candidates cost the same per query: λ changes nothing, AIQ is the quality reached and "
                     "no router can save cost")
    return notes


def identical_curve_notes(results: Sequence[RouterResult]) -> list[str]:
    """A note for every group of routers whose operating points are identical, saying so rather than leaving a
    reader to suspect a copy: the offline table scores each router's point estimate, so two routers that
    estimate the same thing (or collapse to the same choices) draw the same curve."""
    groups: dict[tuple[tuple[float, ...], tuple[float, ...]], list[str]] = {}
    for row in results:
        if row.kind != "single" and row.curve:
            key = (tuple(row.curve.get("cost", ())), tuple(row.curve.get("quality", ())))
            groups.setdefault(key, []).append(row.router)
    chose = {r.router: r.explain.get("chosen") for r in results if r.explain}
    notes = []
    for names in groups.values():
        if len(names) > 1:
            why = ""
            if {"linucb", "thompson"} <= set(names):
                why = ("; linucb and thompson: offline both are scored by their posterior mean, the same ridge "
                       "regression (they differ only in how they explore online)")
            why += "".join(f"; {name} routes with the {chose[name]} it chose" for name in names if name in chose
                           and chose[name] in names)
            notes.append(f"identical operating points: {', '.join(names)}{why}")
    return notes


def run_benchmark(
    train: RoutingDataset,
    test: RoutingDataset,
    routers: Sequence[str | Router] = (),
    *,
    embedder: Any = "minilm",
    seed: int = 0,
    n_lambdas: int = DEFAULT_N_LAMBDAS,
    router_params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    map_routers: RouterMap | None = None,
) -> BenchmarkReport:
    """Fit ``routers`` (names or unfitted :class:`Router` objects) and the baselines on ``train`` and score
    them with every single candidate on ``test``.

    Parameters:
        embedder: featurizer spec for the routers that read the query (``"minilm"``, ``"tfidf"``, a
            sentence-transformers name, or an object); ignored when only baselines run.
        seed: passed to routers whose constructor takes ``seed`` (the random baseline).
        n_lambdas: λ values per sweep.
        router_params: extra constructor arguments per router name.
        map_routers: how the per-router jobs run: ``map_routers(job, items, progress)`` returns ``job(item)``
            for every item, in order (:func:`rag_routing.ray_jobs.run_benchmark_on_ray` passes one that runs
            each as a Ray task); ``None``: one after another in this process.
    """
    started = time.perf_counter()
    items = resolve_routers(routers)
    test = test.select_candidates(train.candidates)
    seconds: dict[str, float] = {}
    featurizer = None
    klasses = [type(i) if isinstance(i, Router) else router_class(i) for i in items]
    needs_features = any(k.uses_features or getattr(k, "shares_featurizer", False) for k in klasses)
    if needs_features:
        t = time.perf_counter()
        train, test, featurizer = featurize(train, test, embedder, progress)
        seconds["featurize"] = time.perf_counter() - t
    ref = Reference.from_test(test)
    job = functools.partial(fit_and_score, train=train, test=test, ref=ref, featurizer=featurizer, seed=seed,
                            router_params=router_params or {}, n_lambdas=n_lambdas)
    if map_routers is None:
        bar = _progress(items, progress, desc="fitting and scoring routers", unit="router")
        results = [job(item) for item in bar]
    else:
        results = list(map_routers(job, items, progress))
    results += [evaluate_single(test, name, ref) for name in test.candidates]
    seconds["total"] = time.perf_counter() - started
    notes = _notes(ref) + identical_curve_notes(results)
    return BenchmarkReport(
        dataset=train.name if train.name == test.name else f"{train.name} -> {test.name}",
        candidates=list(train.candidates),
        n_train=len(train),
        n_test=len(test),
        cost_source=train.cost_source,
        embedder=None if featurizer is None else featurizer.name,
        seed=seed,
        best_single=ref.best_single,
        cost_range=ref.cost_range,
        zero_router_aiq=ref.zero_router_aiq,
        results=results,
        strong=ref.strong,
        weak=ref.weak,
        seconds=seconds,
        notes=notes,
    )


__all__ = ["BASELINES", "RouterMap", "run_benchmark", "fit_and_score", "identical_curve_notes", "out_of_support_share", "load_split", "featurize", "embed", "build_router", "resolve_routers",
           "router_class"]
