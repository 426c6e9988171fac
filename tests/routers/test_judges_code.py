"""CodeExecutionJudge on a real sandboxed child process: passing and failing tests, a timeout, crashes, a blocked
socket, a memory blow-up, blocked subprocesses (the OS-level isolation itself: test_judges_code_isolation.py)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import ledger_scope
from rag_routing.routers.judges import CodeExecutionJudge, run_tests
from rag_routing.routers.judges.sandbox import count_tests

from rag_routing.routers.judges.isolation import isolation_status  # noqa: E402

_STATUS = isolation_status() if os.name == "posix" else None
pytestmark = pytest.mark.skipif(
    _STATUS is None or not _STATUS.available,
    reason=f"the code sandbox needs POSIX and bubblewrap ({_STATUS.reason if _STATUS else 'not POSIX'}); "
           "install bubblewrap to run these tests")

ADD = "```python\ndef add(a, b):\n    return a + b\n```"


def test_passing_and_failing_tests_give_the_fraction():
    two_functions = "def test_zero():\n    assert add(0, 0) == 0\ndef test_neg():\n    assert add(-1, 1) == 0"
    judge = CodeExecutionJudge(tests=["assert add(1, 2) == 3", "assert add(2, 2) == 5", two_functions])
    assert judge.score("Write add.", ADD) == pytest.approx(3 / 4)
    result = judge.last_result_
    assert result.status == "completed" and result.total == 4 and result.loaded
    assert "AssertionError" in result.tests[1]["error"]
    assert CodeExecutionJudge(tests=["assert add(2, 2) == 5"], scoring="all").score("Write add.", ADD) == 0.0


def test_tests_come_from_the_context_and_the_run_is_recorded():
    judge = CodeExecutionJudge(timeout_s=5)
    with ledger_scope() as ledger:
        assert judge.score("Write add.", ADD, context="assert add(2, 3) == 5") == 1.0
    entry = ledger.entries[0]
    assert (entry.stage, entry.component, entry.cost_usd) == ("judge", "code_execution", 0.0)
    assert entry.metadata["status"] == "completed" and entry.seconds > 0
    with pytest.raises(InvalidInputError, match="no tests"):
        judge.score("Write add.", ADD)


def test_an_infinite_loop_is_killed_on_time():
    started = time.perf_counter()
    result = run_tests("while True:\n    pass", ["assert True"], timeout_s=1.5)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout" and result.passed == 0
    assert 1.4 < elapsed < 6.0  # the wall limit, plus process start-up on a slow machine


def test_a_loop_inside_a_test_keeps_the_results_reported_before_it():
    result = run_tests("x = 1", ["assert x == 1", "while True:\n    pass", "assert x == 1"], timeout_s=1.5)
    assert result.status == "timeout" and result.passed == 1 and result.total == 3


def test_crashes_are_reported_not_raised():
    aborted = run_tests("import os\nos.abort()", ["assert True"], timeout_s=5)
    assert aborted.status == "crash" and aborted.returncode < 0 and aborted.passed == 0
    hard_exit = run_tests("import os\nos._exit(3)", ["assert True"], timeout_s=5)
    assert hard_exit.status == "crash" and hard_exit.returncode == 3
    exit_call = run_tests("import sys\nsys.exit(3)", ["assert True"], timeout_s=5)
    assert exit_call.status == "completed" and not exit_call.loaded and "SystemExit" in exit_call.tests[0]["error"]
    judge = CodeExecutionJudge(tests=["assert True"])
    assert judge.score("Crash.", "import os\nos.abort()") == 0.0


def test_opening_a_socket_is_blocked():
    result = run_tests("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))", ["assert True"],
                       timeout_s=5)
    assert result.blocked and result.blocked[0].startswith("socket.") and not result.loaded
    in_test = run_tests("import socket", ["socket.create_connection(('example.com', 80), timeout=1)"], timeout_s=5)
    assert in_test.passed == 0 and "blocked" in in_test.tests[0]["error"]


def test_subprocesses_and_ctypes_are_blocked():
    for code in ("import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')",
                 "import ctypes\nctypes.CDLL(None)"):
        result = run_tests(code, ["assert True"], timeout_s=5)
        assert result.blocked and not result.loaded, code


def test_a_memory_blow_up_hits_the_limit():
    result = run_tests("x = bytearray(4 * 1024 ** 3)", ["assert True"], timeout_s=10, memory_mb=256)
    assert result.memory_error and not result.loaded and result.status == "completed"
    growing = run_tests("chunks = []", ["while True:\n    chunks.append(bytearray(50 * 1024 ** 2))"],
                        timeout_s=10, memory_mb=256)
    assert growing.memory_error and growing.passed == 0


def test_the_child_has_an_empty_environment_and_its_own_directory(monkeypatch):
    monkeypatch.setenv("RAG_ROUTING_SECRET", "do-not-leak")
    result = run_tests("import os\nenv = dict(os.environ)\ncwd = os.getcwd()",
                       ["assert 'RAG_ROUTING_SECRET' not in env", f"assert cwd != {os.getcwd()!r}"], timeout_s=5)
    assert result.passed == 2


def test_inputs_are_checked():
    with pytest.raises(InvalidInputError):
        run_tests("x = 1", "assert x", timeout_s=1)
    with pytest.raises(InvalidInputError):
        CodeExecutionJudge(tests="assert True")
    assert count_tests(["assert 1", "def test_a(): pass\ndef test_b(): pass", "not python ("]) == 4
    assert sys.executable  # the child runs the same interpreter, isolated (-I)
