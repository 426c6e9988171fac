"""`CodeExecutionJudge`: run the generated code against tests; passing tests are the confidence signal.

J. Zhang et al. (2023), "EcoAssistant: Using LLM Assistant More Affordably and Accurately": for code, execution
success is an unambiguous judge — a snippet whose tests fail is sent to the larger model. Estimates P(correct)
as the share of tests that pass (``scoring="fraction"``) or 1/0 for all-or-nothing (``scoring="all"``).

The answer's code is its fenced ```` ```python ```` blocks (or the whole text); the tests are the ``context`` of
the call (a string of Python: asserts or ``test_*`` functions) or the judge's own ``tests``. Each run is a
child process under OS-level isolation (bubblewrap: no network, an empty environment, a read-only view of the
interpreter only, its own small ``tmpfs``; see :mod:`.sandbox`) with a wall timeout that kills the whole sandbox,
memory, CPU and file limits. Where bubblewrap cannot run, the judge raises
:class:`~rag_routing.errors.SandboxUnavailableError` unless built with ``isolation="none-i-accept-the-risk"``.
A run is recorded in the ambient ledger at $0 with its seconds (``stage="judge"``); the last
:class:`~.sandbox.ExecutionResult` is kept in ``last_result_``.

Example:
    >>> judge = CodeExecutionJudge(tests=["assert add(2, 3) == 5", "assert add(-1, 1) == 0"], timeout_s=5)
    >>> judge.score("Write add(a, b).", "```python\\ndef add(a, b):\\n    return a + b\\n```")
    1.0
    >>> judge.score("Write add(a, b).", "def add(a, b):\\n    return a - b")
    0.0
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rag_routing.errors import InvalidInputError
from rag_routing.routers.judges.answer_text import extract_code
from rag_routing.routers.judges.base import Judge, JudgeInput
from rag_routing.routers.judges.isolation import BWRAP, ISOLATION_CHOICES
from rag_routing.routers.judges.sandbox import DEFAULT_BLOCKED, ExecutionResult, run_tests
from rag_routing.validation import check_choice


class CodeExecutionJudge(Judge):
    """Share of tests the answer's code passes in an isolated child process (EcoAssistant, Zhang et al. 2023).

    Args:
        tests: default tests (Python source strings) when a call gives no ``context``.
        timeout_s: wall-clock limit per run (the process group is killed).
        memory_mb: address-space limit; ``cpu_s``: CPU-seconds limit (default: the wall limit).
        scoring: ``"fraction"`` of tests passed, or ``"all"`` (1.0 only if every test passes).
        language: the fence tag whose blocks are taken as code.
        blocked: audit-event prefixes the child refuses (sockets, subprocesses, ctypes, ...), inside the sandbox.
        isolation: ``"bwrap"`` (default: refuse to run where bubblewrap cannot isolate the code) or
            ``"none-i-accept-the-risk"`` (run with only rlimits and the audit hook; a warning says so).
        threshold: accept at or above this score (default 1.0: every test passes).
    """

    name = "code_execution"

    def __init__(self, tests: Sequence[str] | None = None, *, timeout_s: float = 5.0, memory_mb: int | None = 512,
                 cpu_s: int | None = None, scoring: str = "fraction", language: str = "python",
                 blocked: Sequence[str] = DEFAULT_BLOCKED, threshold: float = 1.0, isolation: str = BWRAP):
        super().__init__(threshold=threshold)
        check_choice("scoring", scoring, ("fraction", "all"))
        self.isolation = check_choice("isolation", isolation, ISOLATION_CHOICES)
        if tests is not None and (isinstance(tests, str) or not all(isinstance(t, str) for t in tests)):
            raise InvalidInputError("tests must be a list of Python source strings")
        self.tests = None if tests is None else list(tests)
        self.timeout_s, self.memory_mb, self.cpu_s = timeout_s, memory_mb, cpu_s
        self.scoring, self.language, self.blocked = scoring, language, tuple(blocked)
        self.last_result_: ExecutionResult | None = None

    def run(self, answer: str, tests: Sequence[str]) -> ExecutionResult:
        """Run the code of ``answer`` against ``tests`` and return what happened."""
        return run_tests(extract_code(answer, self.language), tests, timeout_s=self.timeout_s,
                         memory_mb=self.memory_mb, cpu_s=self.cpu_s, blocked=self.blocked, isolation=self.isolation)

    def _score(self, item: JudgeInput) -> float:
        tests = [item.context] if item.context is not None else self.tests
        if not tests:
            raise InvalidInputError("no tests: pass them as context= (Python source) or CodeExecutionJudge(tests=)")
        started = time.perf_counter()
        result = self.run(item.answer, tests)
        self.last_result_ = result
        self._record_compute(started, status=result.status, passed=result.passed, total=result.total,
                             blocked=result.blocked)
        if self.scoring == "all":
            return 1.0 if result.total and result.passed == result.total else 0.0
        return result.fraction


__all__ = ["CodeExecutionJudge"]
