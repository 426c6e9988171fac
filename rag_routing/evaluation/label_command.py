"""The ``rag-routing label`` command: build routing data from queries, candidates and a scorer.

``rag-routing label QUERIES.jsonl --candidate NAME=SPEC [--candidate ...] --out DATA.jsonl [--scorer f1]
[--judge SPEC] [--sampler all|decision_value|uncertainty|random] [--max-labels N] [--batch-size 8]
[--max-usd X] [--max-tokens 64] [--system TEXT] [--seed 0] [--featurizer minilm|tfidf]
[--ray [ADDRESS]] [--ray-chunk 4] [--ray-workers 2] [--ray-task-cpus 1] [--budget-redis URL --budget-key KEY]``

* ``QUERIES.jsonl``: one query a line, ``{"query": "...", "answers": ["...", ...], "meta": {...}}``
  (``answer`` or ``references`` work too); a generic routing JSONL (references in ``meta.references``) too.
* ``--candidate NAME=SPEC`` (repeatable): ``local`` (the offline SmolLM2-135M) or a local model folder /
  ``.gguf`` file / hub id, optionally ``@MODEL`` to bill it at ``MODEL``'s list price (``local@gpt-4o``: a
  hypothetical bill, said so in the ledger's model name); plain local models cost an explicit $0.
* ``--scorer``: ``em``, ``f1``, ``contains``, ``semantic`` (MiniLM cosine) or ``llm_judge`` with ``--judge SPEC``
  (same grammar; its calls are billed under ``label_judge``).
* ``--sampler``: ``all`` labels every cell in order; the others choose the next ``--batch-size`` cells by
  expected information (:mod:`rag_routing.evaluation.active_sampling`), up to ``--max-labels``.
* ``--out``: written atomically after every batch; an existing file is resumed (its labels are kept).
* ``--max-usd``: a ledger budget; a call that would exceed it is refused before it runs, and labelling stops.
  With ``--budget-redis URL`` the budget lives in Redis under ``--budget-key``, shared by every process and
  Ray worker that names the same key.
* ``--ray [ADDRESS]``: each batch's cells are labelled by Ray workers (:mod:`rag_routing.ray_jobs`); the table
  and the ledger are the same as one process's; a budget then needs ``--budget-redis``.

Example:
    >>> parser = argparse.ArgumentParser(prog="rag-routing")
    >>> add_label_arguments(parser.add_subparsers(dest="command").add_parser("label"))
    >>> args = parser.parse_args(["label", "q.jsonl", "--candidate", "small=local", "--out", "d.jsonl"])
    >>> args.candidate, args.scorer, args.sampler
    (['small=local'], 'f1', 'all')
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rag_routing.errors import DatasetFormatError, InvalidInputError


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``label`` arguments to ``parser`` and set ``run`` to :func:`run_label`."""
    from rag_routing.evaluation.active_sampling import SAMPLERS

    parser.add_argument("queries", help="queries JSONL: {query, answers, meta} per line")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=SPEC", required=True,
                        help="a candidate: local, a model path / hub id, optionally @MODEL to bill it at MODEL's "
                        "list price (repeatable)")
    parser.add_argument("--out", required=True, help="the routing JSONL to write (resumed when it exists)")
    parser.add_argument("--scorer", default="f1", choices=("em", "f1", "contains", "semantic", "llm_judge"),
                        help="answer scorer (default f1)")
    parser.add_argument("--judge", metavar="SPEC", help="the judge model of --scorer llm_judge (same grammar)")
    parser.add_argument("--sampler", default="all", choices=("all", *SAMPLERS),
                        help="all cells in order, or choose cells by expected information (default all)")
    parser.add_argument("--max-labels", type=int, help="stop after this many labelled cells")
    parser.add_argument("--batch-size", type=int, default=8, help="cells per batch (saved after each)")
    parser.add_argument("--max-usd", type=float, help="ledger budget in US $ for this run (candidates + judge)")
    parser.add_argument("--max-tokens", type=int, default=64, help="answer length cap (default 64)")
    parser.add_argument("--system", help="a system message sent before every query")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--featurizer", default="minilm", help="query features of the active samplers: minilm "
                        "(offline, cached) or tfidf")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="label each batch's cells on Ray workers: a local Ray, or the cluster at ADDRESS "
                        "('auto', 'ray://host:10001'); needs the ray extra")
    parser.add_argument("--ray-chunk", type=int, default=4, help="cells per Ray task (default 4)")
    parser.add_argument("--ray-workers", type=int, default=2, help="Ray worker actors labelling at once (default 2)")
    parser.add_argument("--ray-task-cpus", type=float, default=1.0, help="CPUs per Ray worker: 1 for local models, "
                        "a fraction (e.g. 0.1) for remote APIs, whose calls mostly wait (default 1)")
    parser.add_argument("--budget-redis", metavar="URL", help="keep the --max-usd budget in this Redis, shared by "
                        "every worker and process that uses the same --budget-key (required with --ray)")
    parser.add_argument("--budget-key", default="rag-routing-label", help="the shared budget's key in Redis")
    parser.add_argument("--quiet", action="store_true", help="less logging")
    parser.set_defaults(run=run_label)


def model_from_spec(spec: str, name: str) -> Any:
    """``local`` / a path or hub id, optionally ``@MODEL``: an ``LLMClient`` around a LocalLLM (see module doc)."""
    from rag_routing.ledger.pricing import default_table
    from rag_routing.llms import LocalLLM
    from rag_routing.routers.judges.llm_client import LLMClient

    target, _, price_as = spec.partition("@")
    if not target.strip():
        raise InvalidInputError(f"empty model spec for {name!r}; use local, a model path, or local@MODEL")
    llm = LocalLLM(None if target == "local" else target)
    if not price_as:
        return LLMClient(llm)  # a local model: an explicit $0
    info = default_table().find(price_as)
    if info is None:
        raise InvalidInputError(f"no list price known for {price_as!r} (in {spec!r}); use a model of the price table")
    return LLMClient(llm, model=f"{llm.model_name} priced as {price_as}", pricing=info.pricing)


def _references(item: dict[str, Any], where: str) -> list[str] | None:
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    value = next((item[key] for key in ("answers", "references", "answer") if key in item), meta.get("references"))
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetFormatError(f"{where}: reference answers must be a string or a list of strings, got {value!r}")
    return list(value)


def read_queries(path: str | Path) -> tuple[list[str], list[list[str] | None], list[dict[str, Any]]]:
    """Queries, their reference answers and metadata from a queries JSONL (see module docstring)."""
    from rag_routing.evaluation.loaders.files import existing, iter_jsonl

    queries, references, metadata = [], [], []
    file = existing(path)
    for number, item in iter_jsonl(file):
        if not isinstance(item, dict) or not isinstance(item.get("query"), str):
            raise DatasetFormatError(f"{file}, line {number}: expected {{'query': str, 'answers': [str, ...]}}")
        meta = item.get("meta", {})
        if not isinstance(meta, dict):
            raise DatasetFormatError(f"{file}, line {number}: 'meta' must be an object")
        queries.append(item["query"])
        references.append(_references(item, f"{file}, line {number}"))
        metadata.append({k: v for k, v in meta.items() if k != "references"})
    if not queries:
        raise DatasetFormatError(f"{file}: no queries")
    return queries, references, metadata


def _candidates(specs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in specs:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or name in out:
            raise InvalidInputError(f"--candidate {item!r}: expected a new NAME=SPEC (e.g. small=local)")
        out[name.strip()] = model_from_spec(spec.strip(), name.strip())
    return out


def _scorer(args: argparse.Namespace) -> Any:
    from rag_routing.evaluation.answer_scorers import make_scorer

    if args.scorer == "llm_judge":
        if not args.judge:
            raise InvalidInputError("--scorer llm_judge needs --judge SPEC (e.g. --judge local)")
        return make_scorer("llm_judge", llm=model_from_spec(args.judge, "judge"))
    if args.judge:
        raise InvalidInputError("--judge is only used with --scorer llm_judge")
    return make_scorer(args.scorer)


def _budget_and_executor(args: argparse.Namespace) -> tuple[Any, Any]:
    """The driver ledger's budget and the cell executor: on Ray the budget lives in Redis, in the workers."""
    from rag_routing.ledger import Budget

    if args.ray_chunk < 1 or args.ray_workers < 1 or not 0 < args.ray_task_cpus <= 64:
        raise InvalidInputError(f"--ray-chunk and --ray-workers must be >= 1 and --ray-task-cpus in (0, 64]; got "
                                f"{args.ray_chunk}, {args.ray_workers}, {args.ray_task_cpus}")
    shared = None
    if args.budget_redis is not None:
        if args.max_usd is None:
            raise InvalidInputError("--budget-redis keeps the --max-usd budget; pass --max-usd too")
        from rag_routing.ray_jobs import SharedRedisBudget

        shared = SharedRedisBudget(args.budget_redis, key=args.budget_key, max_usd=args.max_usd)
    if args.ray is None:
        budget = shared() if shared is not None else (None if args.max_usd is None else Budget(max_usd=args.max_usd))
        return budget, None
    if args.max_usd is not None and shared is None:
        raise InvalidInputError("with --ray the budget must be shared by the workers: pass --budget-redis URL")
    from rag_routing.ray_jobs import RayCellExecutor

    return None, RayCellExecutor(None if args.ray == "local" else args.ray, chunk_size=args.ray_chunk,
                                 budget_factory=shared, workers=args.ray_workers, task_cpus=args.ray_task_cpus)


def run_label(args: argparse.Namespace) -> int:
    """Label the queries (see module docstring); prints what was done and the bill by stage."""
    from rag_routing.evaluation.active_sampling import make_sampler
    from rag_routing.evaluation.labeling import RoutingDataBuilder
    from rag_routing.evaluation.quality_posterior import NeighbourPosterior
    from rag_routing.ledger import CostLedger, ledger_scope

    queries, references, metadata = read_queries(args.queries)
    budget, executor = _budget_and_executor(args)
    builder = RoutingDataBuilder(queries, _candidates(args.candidate), _scorer(args), references=references,
                                 metadata=metadata, path=args.out, system=args.system, max_tokens=args.max_tokens,
                                 name=Path(args.out).stem, executor=executor)
    sampler = None
    if args.sampler == "random":
        sampler = make_sampler("random", seed=args.seed)
    elif args.sampler != "all":
        sampler = make_sampler(args.sampler, posterior=NeighbourPosterior(featurizer=args.featurizer), seed=args.seed)
    before = int(builder.is_labelled().sum())
    ledger = CostLedger(budget=budget)
    with ledger_scope(ledger):
        run = builder.run(sampler, max_labels=args.max_labels, batch_size=args.batch_size)
    total = builder.is_labelled().size
    print(f"labelled {run.labelled} cells ({before} before, {before + run.labelled} of {total} now; "
          f"{run.failed} failed); stopped: {run.stopped}; {run.seconds:.1f} s")
    print(f"candidates ${run.generation_usd:.6f}, judging ${run.judge_usd:.6f}")
    print(ledger.report("stage"))
    print(f"wrote {builder.save()}")
    return 0


__all__ = ["add_label_arguments", "run_label", "model_from_spec", "read_queries"]
