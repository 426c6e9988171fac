"""The ``rag-routing serve`` command: arguments, and building the app from files and URLs.

``rag-routing serve ROUTER.npz --keys KEYS.json [--host 127.0.0.1] [--port 8000] [--generator NAME=SPEC ...]
[--ledger memory|sqlite:PATH|redis://...] [--budgets memory|sqlite:PATH|redis://...] [--quota N]
[--quota-window SECONDS] [--max-tokens 256]``

* ``ROUTER.npz``: a router saved with ``Router.save`` (loaded with :func:`~rag_routing.routers.base.load_router`:
  no code runs from the file); or a routing data file / folder (any format ``rag-routing bench`` reads): the
  default router, ``auto``, is fitted on it at start-up (:func:`load_or_fit_router`).
* ``--generator NAME=SPEC`` per candidate: ``local`` (the offline SmolLM2-135M), a local model folder /
  ``.gguf`` file / hub id (:class:`~rag_routing.llms.local.LocalLLM`), or ``echo`` (answers with the question;
  for smoke tests). Candidates without one get ``local``.
* ``--upstream NAME=BASE_URL,model=MODEL,key-env=VAR``: the candidate forwards to an OpenAI-compatible endpoint
  (:class:`~rag_routing.llms.openai_compatible.OpenAICompatibleLLM`); the key is read from the environment
  variable ``VAR`` at start-up, never from a request. ``--price NAME=IN,OUT`` charges a candidate by its tokens
  ($ per 1M input / output tokens; else the router's expected cost per call is charged).
* ``--batch-window-ms MS`` (off by default) / ``--max-batch 8``: concurrent routed requests share one batch.
* ``--ledger`` / ``--budgets``: where entries and per-key budgets live; a ``redis://`` URL shares them between
  server processes (``pip install 'rag-routing[redis]'``).
* ``--quota N``: at most N routes per key to the router's most expensive candidate per ``--quota-window``.

Example:
    >>> parser = argparse.ArgumentParser(prog="rag-routing")
    >>> add_serve_arguments(parser.add_subparsers(dest="command").add_parser("serve"))
    >>> args = parser.parse_args(["serve", "r.npz", "--keys", "k.json", "--generator", "small=echo"])
    >>> args.port, args.generator, args.ledger
    (8000, ['small=echo'], 'memory')
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.security.redaction import redact


class EchoGenerator:
    """Answers with the last user message, at most ``max_tokens`` words (smoke tests without a model)."""

    def _words(self, messages: list[dict[str, str]], max_tokens: int | None) -> tuple[list[str], str]:
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = text.split(" ")
        if max_tokens is not None and len(words) > max_tokens:
            return words[:max_tokens], "length"
        return words, "stop"

    def generate(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Any:
        from rag_routing.server.generation import Completion

        words, finish = self._words(messages, max_tokens)
        return Completion(" ".join(words), finish_reason=finish)

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Any:
        """The words one by one (each but the last followed by its space)."""
        words, _ = self._words(messages, max_tokens)
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` arguments to ``parser`` and set ``run`` to :func:`run_serve`."""
    parser.add_argument("router", help="a router saved with Router.save (.npz), or routing data to fit the default "
                        "router (auto) on at start-up")
    parser.add_argument("--keys", required=True, help="API keys JSON: {token: {principal, max_usd, max_tokens}}")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--generator", action="append", default=[], metavar="NAME=SPEC",
                        help="generator of a candidate: local, a model path / hub id, or echo (repeatable)")
    parser.add_argument("--ledger", default="memory", help="memory, sqlite:PATH or redis://URL (default memory)")
    parser.add_argument("--budgets", default="memory", help="memory, sqlite:PATH or redis://URL (default memory)")
    parser.add_argument("--bandit-store", metavar="redis://URL|sqlite:PATH",
                        help="an online router keeps its learned state here, shared by every replica")
    parser.add_argument("--quota", type=int, help="expensive routes allowed per key per --quota-window")
    parser.add_argument("--quota-window", type=float, default=3600.0, help="quota window in seconds (default 3600)")
    parser.add_argument("--upstream", action="append", default=[], metavar="NAME=URL,model=M,key-env=VAR",
                        help="the candidate forwards to an OpenAI-compatible endpoint; its API key is read from "
                        "the environment variable VAR (repeatable)")
    parser.add_argument("--price", action="append", default=[], metavar="NAME=IN,OUT",
                        help="charge a candidate by tokens: $ per 1M input and output tokens (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=256, help="output estimate for requests without one")
    parser.add_argument("--batch-window-ms", type=float, metavar="MS",
                        help="route concurrent requests in batches, each waiting up to MS for more (default: each "
                        "request alone; batching pays for cheap features such as tfidf, see benchmarks/serve.py)")
    parser.add_argument("--max-batch", type=int, default=8, help="most requests routed in one batch (default 8)")
    parser.add_argument("--allow-model", action="append", metavar="NAME_OR_PATH",
                        help="an embedding model the saved router may name besides the packaged default; repeat it "
                             "for several (see README, Security model)")
    parser.add_argument("--quiet", action="store_true", help="less logging")
    parser.set_defaults(run=run_serve)


def upstream_generator(spec: str) -> tuple[str, Any]:
    """``NAME=BASE_URL,model=MODEL,key-env=VAR`` (model defaults to NAME; no key-env: no key) -> (name, LLM)."""
    from rag_routing.llms.openai_compatible import OpenAICompatibleLLM

    name, sep, rest = spec.partition("=")
    url, *fields = rest.split(",")
    options: dict[str, str] = {}
    for item in fields:
        key, eq, value = item.partition("=")
        if not eq or key not in ("model", "key-env", "timeout") or not value:
            raise InvalidInputError(f"--upstream {redact(spec)!r}: expected NAME=BASE_URL,model=MODEL,key-env=VAR "
                                    f"(optional timeout=SECONDS), got field {redact(item)!r}")
        options[key] = value
    if not sep or not name or not url:
        raise InvalidInputError(f"--upstream takes NAME=BASE_URL,model=MODEL,key-env=VAR, got {redact(spec)!r}")
    try:
        timeout = float(options.get("timeout", 60))
    except ValueError:
        raise InvalidInputError(f"--upstream {name}: timeout must be a number of seconds") from None
    return name, OpenAICompatibleLLM(url, options.get("model", name), api_key_env=options.get("key-env"),
                                     timeout=timeout)


def prices(specs: list[str]) -> dict[str, Any]:
    """``NAME=IN,OUT`` ($ per 1M input / output tokens) -> {name: Pricing}."""
    from rag_routing.candidates import Pricing

    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        parts = values.split(",")
        try:
            if not sep or not name or len(parts) != 2:
                raise ValueError
            out[name] = Pricing(input_per_mtok=float(parts[0]), output_per_mtok=float(parts[1]))
        except ValueError:
            raise InvalidInputError(f"--price takes NAME=IN,OUT ($ per 1M tokens, finite, >= 0), got {spec!r}") \
                from None
    return out


def _generator(spec: str, name: str) -> Any:
    if spec == "echo":
        return EchoGenerator()
    from rag_routing.llms import LocalLLM

    return LocalLLM(None if spec == "local" else spec, model_name=name, record_to_ledger=False)


#: Ledger entries a server holds in memory (the newest); older ones live on in the totals and the store.
SERVER_LEDGER_ENTRIES = 10_000


def _ledger(spec: str) -> Any:
    from rag_routing.ledger import CostLedger, SQLiteStore

    # A server runs for weeks: hold the newest entries only (totals stay exact; the store keeps the history).
    if spec == "memory":
        return CostLedger(max_entries=SERVER_LEDGER_ENTRIES)
    if spec.startswith("sqlite:"):
        return CostLedger.from_store(SQLiteStore(spec[len("sqlite:"):], namespace="serve"),
                                     max_entries=SERVER_LEDGER_ENTRIES)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from rag_routing.ledger.redis_store import RedisLedgerStore

        return CostLedger(store=RedisLedgerStore(spec, namespace="serve"),  # history stays in Redis
                          max_entries=SERVER_LEDGER_ENTRIES)
    raise InvalidInputError(f"--ledger must be memory, sqlite:PATH or redis://URL, got {redact(spec)!r}")


def _budgets(spec: str) -> Any:
    from rag_routing.ledger import MemoryBudgetStore, SQLiteBudgetStore

    if spec == "memory":
        return MemoryBudgetStore()
    if spec.startswith("sqlite:"):
        return SQLiteBudgetStore(spec[len("sqlite:"):])
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from rag_routing.ledger.redis_store import RedisBudgetStore

        return RedisBudgetStore(spec)
    raise InvalidInputError(f"--budgets must be memory, sqlite:PATH or redis://URL, got {redact(spec)!r}")


def load_or_fit_router(path: str, allowed_models: Sequence[str] | None = None) -> Any:
    """The router saved at ``path`` (``.npz``), or, for routing data (a file or folder ``rag-routing bench``
    reads), the default router ``auto`` fitted on it: a learned router only where cross-validation shows it beats
    the best fixed candidate (:class:`~rag_routing.routers.auto.AutoRouter`)."""
    from rag_routing.routers.base import load_router

    if str(path).endswith(".npz"):
        return load_router(path, allowed_models=allowed_models)
    from rag_routing.evaluation.loaders import load_dataset
    from rag_routing.routers.auto import AutoRouter

    return AutoRouter().fit(load_dataset(path))


def _use_bandit_store(router: Any, spec: str) -> None:
    if not callable(getattr(router, "use_store", None)):
        raise InvalidInputError(f"--bandit-store needs an online router (epsilon_greedy, linucb, thompson, lri); "
                                f"{router.name!r} learns nothing from feedback")
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from rag_routing.ledger.redis_bandit_store import RedisBanditStore

        store: Any = RedisBanditStore(spec)
    elif spec.startswith("sqlite:"):
        from rag_routing.routers.bandits.store import SQLiteBanditStore

        store = SQLiteBanditStore(spec[len("sqlite:"):])
    else:
        raise InvalidInputError(f"--bandit-store must be redis://URL or sqlite:PATH, got {redact(spec)!r}")
    router.use_store(store)


def build_app(args: argparse.Namespace) -> Any:
    """The app described by parsed ``serve`` arguments (nothing is started)."""
    from rag_routing.server.app import create_app

    router = load_or_fit_router(args.router, getattr(args, "allow_model", None))
    specs: dict[str, str] = {}
    for item in args.generator:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise InvalidInputError(f"--generator takes NAME=SPEC, got {item!r}")
        specs[name] = spec
    upstreams = dict(upstream_generator(spec) for spec in args.upstream)
    both = set(specs) & set(upstreams)
    if both:
        raise InvalidInputError(f"candidates {sorted(both)} have both --generator and --upstream; give one")
    unknown = (set(specs) | set(upstreams)) - set(router.candidates_)
    if unknown:
        raise InvalidInputError(f"--generator/--upstream for unknown candidates {sorted(unknown)}; the router has "
                                f"{router.candidates_}")
    pricing = prices(args.price)
    unknown = set(pricing) - set(router.candidates_)
    if unknown:
        raise InvalidInputError(f"--price for unknown candidates {sorted(unknown)}; the router has "
                                f"{router.candidates_}")
    generators = {c: upstreams[c] if c in upstreams else _generator(specs.get(c, "local"), c)
                  for c in router.candidates_}
    if args.bandit_store is not None:
        _use_bandit_store(router, args.bandit_store)
    if args.quota is not None:
        from rag_routing.security import ExpensiveRouteQuota, GuardedRouter

        router = GuardedRouter(router, [ExpensiveRouteQuota(args.quota, args.quota_window)])
    window = None if args.batch_window_ms is None else args.batch_window_ms / 1000.0
    return create_app(router, generators, args.keys, ledger=_ledger(args.ledger), budget_store=_budgets(args.budgets),
                      default_max_tokens=args.max_tokens, prices=pricing, batch_window=window,
                      max_batch=args.max_batch)


def run_serve(args: argparse.Namespace) -> int:
    """Build the app and serve it until interrupted; returns the exit status."""
    from rag_routing.server.app import serve

    import logging

    from rag_routing.security.redaction import install_log_redaction

    if not logging.getLogger().handlers:  # --quiet: warnings still go through a (redacting) handler
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    install_log_redaction("rag_routing", "uvicorn", "uvicorn.error", "uvicorn.access")
    app = build_app(args)
    app.state.service.warm_up()  # the tokenizer and the embedder load once, before the first request
    print(f"serving {args.router} on http://{args.host}:{args.port}/v1/chat/completions (health: /health)")
    serve(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0


__all__ = ["add_serve_arguments", "run_serve", "build_app", "load_or_fit_router", "EchoGenerator"]
