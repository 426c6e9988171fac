"""The ``rag-routing`` command.

* ``rag-routing bench DATA [--format F] [--routers a,b] [--test-size 0.5] [--train A [--train A2] --test B] [--seed 0]
  [--json OUT.json] [--plot OUT.png] [--embedder minilm|tfidf|NAME] [--ray [ADDRESS]]``: benchmark routers on a data set
  (:mod:`rag_routing.evaluation.benchmark`); prints a table, optionally writes JSON and a plot.
* ``rag-routing demo [--corpus FILE]``: the routed RAG chatbot over the bundled corpus (offline: local MiniLM,
  FAISS, BM25 and SmolLM2): decision traces, the ledger and the bill against an always-biggest pipeline.
* ``rag-routing serve ROUTER.npz --keys KEYS.json``: an OpenAI-compatible HTTP endpoint in front of a router
  (:mod:`rag_routing.server`).
* ``rag-routing bench-demo [--data ../shared/data]``: a small benchmark on the shared RouteLLM MMLU data.
* ``rag-routing label QUERIES.jsonl --candidate NAME=SPEC ... --out DATA.jsonl``: build routing data (answers
  scored, costs from the ledger, cells chosen by expected information; :mod:`rag_routing.evaluation.label_command`).

The logic lives in :mod:`rag_routing.evaluation`; this module only parses arguments and prints.
Exit status: 0 on success, 2 on a usage or data error (the message says what to do).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rag_routing.errors import InvalidInputError, RagRoutingError
from rag_routing.json_input import read_json_file


def _test_size(text: str) -> float:
    """``--test-size``: a fraction in (0, 1) or a whole number of rows >= 1 (argparse reports anything else)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < 1 or (value >= 1 and value.is_integer() and value < 2**53)):
        raise argparse.ArgumentTypeError(f"{text} is neither a fraction in (0, 1) nor a whole number of rows")
    return value


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _price_table(path: str | None) -> Any:
    if path is None:
        return None
    from rag_routing.ledger.pricing import PriceTable

    data = read_json_file(path, f"the price table {path!r}", error=InvalidInputError)
    models = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise InvalidInputError(f"{path}: expected {{'models': {{name: {{'input': .., 'output': ..}}}}}}")
    return PriceTable.default().with_overrides(models)


def _finish(report: Any, args: argparse.Namespace) -> None:
    print(report.table())
    if args.json:
        print(f"wrote {report.write_json(args.json)}")
    if args.plot:
        from rag_routing.evaluation.plots import plot_report

        print(f"wrote {plot_report(report, args.plot)}")


def _bench(args: argparse.Namespace) -> int:
    from rag_routing.evaluation.benchmark import load_split, resolve_routers, run_benchmark

    routers = [r for r in (args.routers or "").split(",") if r.strip()]
    resolve_routers(routers)  # unknown names fail here, before anything is loaded
    run: Callable[..., Any] = run_benchmark
    if args.ray is not None:  # each router's fit and λ sweep as a Ray task; Ray is joined before the data loads
        from rag_routing import ray_jobs

        address = None if args.ray == "local" else args.ray
        ray_jobs.connect(address)
        run = functools.partial(ray_jobs.run_benchmark_on_ray, address=address)
    train, test = load_split(args.data, fmt=args.format, train=args.train, test=args.test,
                             test_size=args.test_size, seed=args.seed, output_tokens=args.output_tokens,
                             price_table=_price_table(args.prices))
    report = run(train, test, routers, embedder=args.embedder, seed=args.seed,
                 n_lambdas=args.lambdas, progress=not args.quiet,
                 router_params=_description_params(routers, args.descriptions))
    _finish(report, args)
    return 0


def _description_params(routers: list[str], path: str | None) -> dict[str, dict[str, Any]] | None:
    """``{router: {"descriptions": {...}}}`` for the routers that take candidate descriptions (``graph``)."""
    if path is None:
        return None
    import inspect

    from rag_routing.evaluation.benchmark import resolve_routers, router_class

    descriptions = read_json_file(path, f"--descriptions {path}", error=InvalidInputError)
    if not isinstance(descriptions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in descriptions.items()):
        raise InvalidInputError(f"--descriptions {path} must hold one JSON object {{candidate: description}} "
                                "with non-empty string descriptions")
    return {name: {"descriptions": descriptions} for name in resolve_routers(routers) if isinstance(name, str)
            and "descriptions" in inspect.signature(router_class(name).__init__).parameters}


def _demo(args: argparse.Namespace) -> int:
    from rag_routing.stages.demo import run_demo

    run_demo(args.corpus)
    return 0


def _bench_demo(args: argparse.Namespace) -> int:
    from rag_routing.evaluation.demo import run_demo, saving_summary

    routers = None if args.routers is None else [r for r in args.routers.split(",") if r.strip()]
    report = run_demo(args.data, routers, embedder=args.embedder, seed=args.seed, progress=not args.quiet)
    _finish(report, args)
    print(saving_summary(report))
    return 0


def _outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="split and random-baseline seed (default 0)")
    parser.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the cost-quality curves (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from rag_routing.evaluation.loaders import FORMATS

    parser = argparse.ArgumentParser(prog="rag-routing", description="Route queries to the cheapest LLM that "
                                     "still answers well; benchmark routers on recorded outcomes.")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmark routers on a routing data set")
    bench.add_argument("data", nargs="?", help="data file or folder (split at random; or use --train/--test)")
    bench.add_argument("--format", choices=FORMATS, help="data format (default: detected from the file)")
    bench.add_argument("--routers", default="", help="comma-separated router names, 'auto' (the default router: "
                       "a learned router only where CV shows it beats the best fixed candidate), or 'all' (the "
                       "baselines random, oracle, best, fixed, cheapest always run)")
    bench.add_argument("--test-size", type=_test_size, default=0.5, help="test fraction of DATA in (0, 1), or a "
                       "number of rows (default 0.5)")
    bench.add_argument("--train", action="append", help="training file (with --test, instead of DATA); repeat it "
                       "to train on the union of several files (RouterDC's leave-one-task-out protocol)")
    bench.add_argument("--test", help="test file (with --train)")
    bench.add_argument("--embedder", default="minilm", help="query features: minilm (offline default, cached "
                       "on disk), tfidf (no torch), or a sentence-transformers name")
    bench.add_argument("--output-tokens", type=_int_at_least(1), help="assumed answer length for files without "
                       "costs or "
                       "responses (default: 8 for multiple choice, 256 otherwise)")
    bench.add_argument("--prices", help="price table JSON overriding the shipped one ({'models': {name: "
                       "{'input': $/1M, 'output': $/1M}}})")
    bench.add_argument("--lambdas", type=_int_at_least(1), default=200,
                       help="λ values per cost-quality sweep (default 200)")
    bench.add_argument("--descriptions", metavar="FILE.json", help="one-line candidate descriptions "
                       "({name: text}) for routers that read them (graph); default: the shipped table")
    bench.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="fit and score each router as a Ray task: a local Ray, or the cluster at ADDRESS "
                       "('auto', 'ray://host:10001'); same results as without; needs the ray extra")
    _outputs(bench)
    bench.set_defaults(run=_bench)

    demo = commands.add_parser("demo", help="the routed RAG chatbot over the bundled corpus (offline)")
    demo.add_argument("--corpus", help="a corpus JSONL ({_id, title, text} lines) instead of the bundled one")
    demo.add_argument("--quiet", action="store_true", help="no progress messages")
    demo.set_defaults(run=_demo)

    quick = commands.add_parser("bench-demo", help="a small benchmark on the shared RouteLLM MMLU data")
    quick.add_argument("--data", default="../shared/data", help="shared data folder (default ../shared/data)")
    quick.add_argument("--routers", help="comma-separated learned routers (default: knn when available)")
    quick.add_argument("--embedder", default="tfidf", help="query features (default tfidf: fast, no torch)")
    _outputs(quick)
    quick.set_defaults(run=_bench_demo)

    from rag_routing.evaluation.label_command import add_label_arguments

    add_label_arguments(commands.add_parser("label", help="build routing data: run (query, candidate) pairs through "
                                            "the ledger, score the answers, choose pairs by expected information"))

    from rag_routing.server.launch import add_serve_arguments

    add_serve_arguments(commands.add_parser("serve", help="OpenAI-compatible /v1/chat/completions in front of a "
                                            "saved router (bearer keys, per-key budgets, streaming)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rag-routing``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return int(args.run(args))
    except RagRoutingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
