"""What automatic metering plus the pre-call budget check add to one LlamaIndex LLM call, in microseconds.

Run: ``python benchmarks/llamaindex_metering_overhead.py [--repeat 2000]``.

The LLM is an in-process fake (``gpt-4o-mini``, reports OpenAI usage), so the call itself costs almost nothing
and the difference is the hooks' work: the budget gate (count the prompt's tokens, price and reserve the estimate
before the provider runs) and the recorder (price the reported usage, record the entry, commit the reservation).
Rows, each timed against the bare call (hooks detached, no ledger), alternately, medians after a warm-up:

* ``complete`` inside ``ledger_scope(CostLedger())`` (metering only);
* ``complete`` inside ``ledger_scope(CostLedger(budget=Budget(max_usd=...)))`` (metering + budget);
* ``stream_complete`` (4 pieces) with a budget;
* ``acomplete`` with a budget.

Wall-clock medians on this machine (shared and loaded: compare the columns of one run, not runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.llms import CustomLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402

from rag_routing.integrations.llamaindex.budget_gate import BudgetSpanHandler, install  # noqa: E402
from rag_routing.integrations.llamaindex.instrumentation import LedgerEventHandler  # noqa: E402
from rag_routing.ledger import Budget, CostLedger, ledger_scope  # noqa: E402

PROMPT = "Context: Tesmark is an island nation in the Northern Sea. Its capital is Velmora.\nQuestion: capital?"


class FakeProvider(CustomLLM):
    """Answers at once and reports OpenAI-style usage under a priced model name."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini", num_output=16)

    def _response(self, text: str, delta: str | None = None) -> CompletionResponse:
        return CompletionResponse(text=text, delta=delta, raw={"model": "gpt-4o-mini",
                                                               "usage": {"prompt_tokens": 30, "completion_tokens": 4}})

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._response("Velmora is the capital")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Iterator[CompletionResponse]:
        def gen() -> Iterator[CompletionResponse]:
            text = ""
            for word in ("Velmora", " is", " the", " capital"):
                text += word
                yield self._response(text, word)

        return gen()


def detached() -> Any:
    """Context: the hooks removed from the root dispatcher (the bare call), restored afterwards."""
    root = get_dispatcher()

    class Bare:
        def __enter__(self) -> None:
            self.saved = list(root.event_handlers), list(root.span_handlers)
            root.event_handlers = [h for h in self.saved[0] if not isinstance(h, LedgerEventHandler)]
            root.span_handlers = [h for h in self.saved[1] if not isinstance(h, BudgetSpanHandler)]

        def __exit__(self, *exc: Any) -> None:
            root.event_handlers, root.span_handlers = self.saved

    return Bare()


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e6


def compare(name: str, call: Callable[[], Any], budget: bool, repeat: int) -> None:
    bare, hooked = [], []
    ledger = CostLedger(budget=Budget(max_usd=1e6) if budget else None)
    for i in range(repeat + 50):
        with detached():
            b = timed(call)
        with ledger_scope(ledger):
            h = timed(call)
        if i >= 50:  # warm-up
            bare.append(b)
            hooked.append(h)
    mb, mh = statistics.median(bare), statistics.median(hooked)
    print(f"{name:<44} bare {mb:8.1f} µs   metered {mh:8.1f} µs   overhead {mh - mb:7.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    install()
    llm = FakeProvider()
    loop = asyncio.new_event_loop()
    compare("complete, metering only", lambda: llm.complete(PROMPT), False, args.repeat)
    compare("complete, metering + budget", lambda: llm.complete(PROMPT), True, args.repeat)
    compare("stream_complete (4 pieces), metering + budget", lambda: list(llm.stream_complete(PROMPT)), True,
            args.repeat)
    compare("acomplete, metering + budget", lambda: loop.run_until_complete(llm.acomplete(PROMPT)), True,
            args.repeat)
    loop.close()


if __name__ == "__main__":
    main()
