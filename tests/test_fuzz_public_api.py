"""A hypothesis fuzz of the public entry points: whatever the arguments, the library either works or raises one of
its own errors (:class:`rag_routing.errors.RagRoutingError`) — never a raw ``TypeError``, ``ValueError`` from
scikit-learn, ``RecursionError``, ``MemoryError``, ... (issue 16, "The public API").

Covered: routers' ``fit`` / ``route`` with the cheap featurizers, ``select``, ``calibrate``, ``RoutingDataset``
and its methods, the ledger, budgets, token counting, the data-file loaders, saved-state readers and the CLI's
argument parsing (where argparse's ``SystemExit(2)`` is the answer to bad input). Deterministic (derandomized)
and bounded: 3,150 generated cases in all, in about 45 seconds on two busy cores (marked slow).
"""

from __future__ import annotations

import io
import json
import math
import string
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rag_routing import RoutingDataset
from rag_routing.array_blobs import decode_arrays, encode_arrays
from rag_routing.cli import build_parser
from rag_routing.decision import calibrate, select
from rag_routing.errors import RagRoutingError
from rag_routing.evaluation.loaders import FORMATS, load_dataset
from rag_routing.json_input import parse_json
from rag_routing.ledger import Budget, CostLedger
from rag_routing.ledger.tokens import count_tokens, count_tokens_batch
from rag_routing.routers.persistence import read_state
from rag_routing.routers.registry import create_router

# About 45 s on two busy cores: more than a fast test should take, so it runs with the slow tests (CI runs both).
pytestmark = pytest.mark.slow

#: Cheap routers (no torch, no network), each fitted with the TF-IDF featurizer where it takes one.
ROUTERS = ("knn", "cluster", "elo", "mf", "sw_ranking", "regressor", "semantic", "tfidf_lr", "random", "best",
           "cheapest", "epsilon_greedy", "linucb", "thompson", "lri")


def fuzz(examples: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Deterministic settings with a fixed number of examples and no per-example deadline (a slow first import
    must not fail the run); the totals are bounded by ``examples``."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def library_errors_only(call: Callable[[], Any]) -> Any:
    """Run ``call``; a rag_routing error is a fine answer, anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call()
        except RagRoutingError:
            return None


# ---------------------------------------------------------------------------------------------- strategies
WORDS = ["refund", "refund please", "2+2", "?", "what is the capital of France", "prove it", "x", "é ü",
         "translate this", "DROP TABLE", "a b c d e f", "\u200b", "🙂 emoji"]
texts = st.one_of(st.sampled_from(WORDS), st.text(max_size=30),
                  st.text(alphabet=string.ascii_lowercase + " ", min_size=1, max_size=30))
junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=6), st.lists(st.integers(-2, 2), max_size=3), st.just(complex(1, 1)),
                 st.binary(max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
numbers = st.one_of(st.floats(min_value=0, max_value=10), st.integers(0, 5), junk)
cells = st.one_of(st.floats(min_value=0, max_value=1), st.just(float("nan")))
cost_cells = st.one_of(st.floats(min_value=0, max_value=0.1), st.just(float("nan")), st.just(-1.0))


@st.composite
def datasets(draw: st.DrawFn) -> RoutingDataset | None:
    n, m = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    queries = draw(st.lists(texts.filter(str.strip), min_size=n, max_size=n))
    quality = draw(st.lists(st.lists(cells, min_size=m, max_size=m), min_size=n, max_size=n))
    cost = draw(st.lists(st.lists(st.floats(min_value=0, max_value=0.1), min_size=m, max_size=m), min_size=n,
                         max_size=n))
    if draw(st.integers(0, 4)) == 0:  # now and then an unknown or a negative cost
        cost[draw(st.integers(0, n - 1))][draw(st.integers(0, m - 1))] = draw(cost_cells)
    return library_errors_only(lambda: RoutingDataset(queries, [f"model-{j}" for j in range(m)], quality, cost))


matrices = st.one_of(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
               elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
    st.lists(st.lists(st.floats(allow_nan=True), max_size=3), max_size=3),
    junk)


# ---------------------------------------------------------------------------------------------- routers
@fuzz(200)
@given(name=st.sampled_from(ROUTERS), data=datasets(), queries=st.one_of(st.lists(texts, max_size=3), junk),
       lam=st.one_of(st.none(), numbers), budget=st.one_of(st.none(), numbers))
def test_routers_fit_and_route(name: str, data: RoutingDataset | None, queries: Any, lam: Any, budget: Any):
    if data is None:
        return

    def run() -> None:
        kwargs = {"featurizer": "tfidf"} if name not in ("random", "best", "cheapest", "tfidf_lr") else {}
        if name == "tfidf_lr":
            kwargs = {"min_df": 1}
        router = create_router(name, **kwargs).fit(data)
        router.route(queries, lam=lam, budget=budget)

    library_errors_only(run)


# ---------------------------------------------------------------------------------------------- decision rule
@fuzz(450)
@given(quality=matrices, cost=matrices, lam=numbers, budget=st.one_of(st.none(), numbers, matrices),
       fallback=st.one_of(st.none(), st.integers(-2, 4), st.text(max_size=3), junk),
       candidates=st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=4), junk))
def test_select(quality: Any, cost: Any, lam: Any, budget: Any, fallback: Any, candidates: Any):
    library_errors_only(lambda: select(quality, cost, lam, budget, fallback, candidates))


@fuzz(400)
@given(quality=matrices, cost=matrices, share=numbers,
       expensive=st.one_of(st.none(), st.lists(st.integers(-3, 4), max_size=3), junk),
       budget=st.one_of(st.none(), numbers), max_iter=st.one_of(st.integers(-1, 50), junk))
def test_calibrate(quality: Any, cost: Any, share: Any, expensive: Any, budget: Any, max_iter: Any):
    library_errors_only(lambda: calibrate(quality, cost, share, expensive, budget, max_iter=max_iter))


# ---------------------------------------------------------------------------------------------- datasets
@fuzz(300)
@given(queries=st.one_of(st.lists(texts, max_size=4), junk), candidates=st.one_of(st.lists(texts, max_size=3), junk),
       quality=matrices, cost=matrices, metadata=st.one_of(st.none(), st.lists(junk, max_size=3), junk),
       test_size=numbers, indices=st.one_of(st.lists(st.integers(-5, 5), max_size=4), junk),
       names=st.one_of(st.lists(st.text(max_size=8), max_size=3), junk))
def test_routing_dataset(queries: Any, candidates: Any, quality: Any, cost: Any, metadata: Any, test_size: Any,
                         indices: Any, names: Any):
    data = library_errors_only(lambda: RoutingDataset(queries, candidates, quality, cost, metadata=metadata))
    if data is None:
        return
    library_errors_only(lambda: data.train_test_split(test_size=test_size))
    library_errors_only(lambda: data.subset(indices))
    library_errors_only(lambda: data.select_candidates(names))
    library_errors_only(lambda: (data.concat(data), data.summary(), data.mean_cost()))


# ---------------------------------------------------------------------------------------------- ledger, budgets
@fuzz(200)
@given(stage=st.one_of(st.sampled_from(["retrieval", "generation", "judge"]), junk), model=st.one_of(texts, junk),
       tokens_in=numbers, tokens_out=numbers, cost=numbers, seconds=numbers, metadata=junk,
       text=st.one_of(texts, junk), usage=st.one_of(junk, st.dictionaries(
           st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens"]), numbers)),
       by=st.one_of(st.sampled_from(["stage", "model", "component"]), junk))
def test_the_ledger(folder: Path, stage: Any, model: Any, tokens_in: Any, tokens_out: Any, cost: Any, seconds: Any,
                    metadata: Any, text: Any, usage: Any, by: Any):
    ledger = CostLedger()
    library_errors_only(lambda: ledger.record(stage, model=model, input_tokens=tokens_in, output_tokens=tokens_out,
                                              cost_usd=cost, seconds=seconds, metadata=metadata))
    library_errors_only(lambda: ledger.record_call(stage=stage, model=model, input_text=text, usage=usage,
                                                   allow_unpriced=True))
    library_errors_only(lambda: (ledger.totals(), ledger.breakdown(by), ledger.report(by)))
    path = folder / "ledger.json"
    library_errors_only(lambda: ledger.to_json(path))
    library_errors_only(lambda: CostLedger.from_json(path))
    path.write_text(text if isinstance(text, str) else repr(text), encoding="utf-8", errors="surrogatepass")
    library_errors_only(lambda: CostLedger.from_json(path))


@fuzz(250)
@given(limits=st.lists(st.one_of(st.none(), numbers), min_size=4, max_size=4),
       scope=st.one_of(st.sampled_from(["request", "session", "principal"]), junk),
       principal=st.one_of(st.none(), texts, junk), wanted=st.lists(numbers, min_size=4, max_size=4),
       actual=st.one_of(st.none(), numbers), settle=st.sampled_from(["commit", "release"]))
def test_budgets(limits: list[Any], scope: Any, principal: Any, wanted: list[Any], actual: Any, settle: str):
    budget = library_errors_only(lambda: Budget(*limits, scope=scope, principal=principal))
    if budget is None:
        return
    reservation = library_errors_only(lambda: budget.reserve(*wanted))
    if reservation is not None:
        if settle == "commit":
            library_errors_only(lambda: reservation.commit(usd=actual))
        library_errors_only(reservation.release)
    library_errors_only(lambda: (budget.can_afford(*wanted), budget.remaining(), budget.to_dict()))


# ---------------------------------------------------------------------------------------------- tokens
@fuzz(250)
@given(text=st.one_of(texts, st.text(max_size=200), junk), model=st.one_of(
    st.none(), st.sampled_from(["gpt-4o", "openai:gpt-4o-mini", "ft:gpt-4o:org::1", "claude-3", "", "/x/y"]),
    texts, junk), many=st.one_of(st.lists(texts, max_size=4), junk), threads=st.one_of(st.integers(-1, 4), junk))
def test_token_counting(text: Any, model: Any, many: Any, threads: Any):
    library_errors_only(lambda: count_tokens(text, model=model))
    library_errors_only(lambda: count_tokens_batch(many, model=model, num_threads=threads))


# ---------------------------------------------------------------------------------------------- loaders
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["query", "outcomes", "quality", "cost_usd", "question",
                                                        "scores", "prompt", "model", "judge", "a", "b"]),
                                                       inner, max_size=4)),
                           max_leaves=12)
csv_columns = st.lists(st.sampled_from(["prompt", "gpt-4o", "gpt-4o|total_cost", "mixtral", "mixtral|total_cost",
                                        "sample_id", "eval_name", "x"]), min_size=1, max_size=5)


@st.composite
def data_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["csv", "jsonl", "json", "bytes"]))
    if kind == "csv":
        columns = draw(csv_columns)
        rows = draw(st.lists(st.lists(st.one_of(texts, st.floats(allow_nan=True).map(str), st.sampled_from(
            ["True", "False", "0", "1", ""])), min_size=len(columns), max_size=len(columns) + 1), max_size=4))
        lines = [",".join(columns)] + [",".join(f'"{c}"' if "," in c else c for c in row) for row in rows]
        return ".csv", "\n".join(lines).encode("utf-8", "surrogatepass")
    if kind == "jsonl":
        lines = draw(st.lists(json_values, max_size=4))
        return ".jsonl", "\n".join(json.dumps(v) for v in lines).encode()
    if kind == "json":
        return ".json", json.dumps(draw(json_values)).encode()
    return draw(st.sampled_from([".csv", ".json", ".jsonl", ".txt"])), draw(st.binary(max_size=64))


@fuzz(250)
@given(file=data_files(), fmt=st.one_of(st.none(), st.sampled_from(FORMATS), st.text(max_size=5)),
       output_tokens=st.one_of(st.none(), st.integers(-2, 300), junk))
def test_loaders(folder: Path, file: tuple[str, bytes], fmt: Any, output_tokens: Any):
    suffix, content = file
    path = folder / f"data{suffix}"
    path.write_bytes(content)
    library_errors_only(lambda: load_dataset(path, fmt, output_tokens=output_tokens))


@fuzz(200)
@given(blob=st.one_of(st.binary(max_size=200), st.builds(
    lambda arrays, cut: encode_arrays(arrays)[:cut],
    st.dictionaries(st.sampled_from(["a", "b", "__meta__"]),
                    hnp.arrays(st.sampled_from([np.float32, np.int64, np.uint8]), hnp.array_shapes(max_side=3)),
                    max_size=2), st.integers(0, 2000))),
    text=st.one_of(st.text(max_size=60), st.builds(lambda depth: "[" * depth + "]" * depth, st.integers(0, 3000))))
def test_saved_state_readers(folder: Path, blob: bytes, text: str):
    library_errors_only(lambda: decode_arrays(blob))
    path = folder / "router.npz"
    path.write_bytes(blob)
    library_errors_only(lambda: read_state(path))
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8))
    path.write_bytes(buffer.getvalue())
    library_errors_only(lambda: read_state(path))
    library_errors_only(lambda: parse_json(text, "fuzz"))


# ---------------------------------------------------------------------------------------------- the CLI
cli_tokens = st.one_of(
    st.sampled_from(["bench", "demo", "bench-demo", "label", "serve", "--routers", "knn,mf", "all", "--test-size",
                     "0.5", "1.5", "-1", "nan", "inf", "10", "--seed", "--lambdas", "--output-tokens", "--format",
                     "routerbench", "--embedder", "tfidf", "--train", "--test", "--json", "--quiet", "--keys",
                     "--port", "0", "99999", "--host", "--candidate", "a=b", "--out", "--budget", "x.csv", "-h"]),
    st.text(max_size=8))


@fuzz(650)
@given(argv=st.lists(cli_tokens, max_size=8))
def test_cli_argument_parsing(parser: Any, argv: list[str]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:
            assert stop.code in (0, 2)  # usage error (or --help)
            return
        except RagRoutingError:
            return
    if getattr(args, "test_size", None) is not None:
        assert 0 < args.test_size < 1 or float(args.test_size).is_integer()
    for name in ("seed", "lambdas", "output_tokens"):
        value = getattr(args, name, None)
        assert value is None or (isinstance(value, int) and value >= 0 and not math.isnan(value))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scratch folder for the whole module (files are overwritten example after example)."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def parser() -> Any:
    """The CLI's parser, built once (parse_args keeps no state between calls)."""
    return build_parser()
