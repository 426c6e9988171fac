"""A deterministic fake LLM for the fast stage tests (routing logic only; the slow tests use the real model)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class FakeGeneration:
    def __init__(self, text: str, input_tokens: int, output_tokens: int):
        self.text, self.input_tokens, self.output_tokens, self.seconds = text, input_tokens, output_tokens, 0.001


class FakeLLM:
    """Canned answers chosen by a rule on the messages; records each call in the ambient ledger like LocalLLM.

    ``rule(messages) -> str``; default: "unanswerable" when the system prompt allows it, a follow-up sentence
    for multi-step prompts, else "Ostrelle".
    """

    model_name = "fake-llm"

    def __init__(self, rule: Callable[[list[dict[str, str]]], str] | None = None, usd_per_call: float = 0.0):
        self.rule = rule or default_rule
        self.usd_per_call = usd_per_call
        self.calls: list[list[dict[str, str]]] = []
        self._lock = threading.Lock()

    def generate(self, messages, max_new_tokens: int = 16, temperature: float = 0.0, **_: object):
        from rag_routing.ledger import current_ledger

        with self._lock:
            self.calls.append(list(messages))
        text = self.rule(list(messages))
        n_in = sum(len(m["content"].split()) for m in messages)
        n_out = len(text.split())
        ledger = current_ledger()
        if ledger is not None:
            ledger.record("generation", "fake", self.model_name, input_tokens=n_in, output_tokens=n_out,
                          cost_usd=self.usd_per_call, seconds=0.001)
        return FakeGeneration(text, n_in, n_out)


def default_rule(messages: list[dict[str, str]]) -> str:
    system = messages[0]["content"]
    if "fact from it" in system:
        return "The Halden Bridge was designed by Mara Voss."
    if "reply exactly: unanswerable" in system:
        return "unanswerable"
    return "Ostrelle"
