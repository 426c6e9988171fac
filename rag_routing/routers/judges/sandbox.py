"""Run generated Python code and its tests in a child process with time, memory and CPU limits, no network.

**Best-effort isolation, not a security sandbox.** The child is ``python -I -X utf8`` (isolated mode: no user
site-packages, no ``PYTHON*`` variables, no current directory on ``sys.path``) started with an empty environment,
in a fresh temporary directory, in its own session (the whole process group is killed on timeout). Before the
code runs, the child sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE`` and no core
dumps, and installs a ``sys.addaudithook`` hook that refuses sockets, subprocesses, ``fork``/``exec``,
``os.kill``, ``ctypes`` and raising the limits again (a hook cannot be removed). The limits are set in the child
rather than in ``preexec_fn``, which is unsafe in a threaded parent (Python's ``subprocess`` docs).

What this does *not* stop: native code (an extension module) can bypass audit hooks, and the code can read the
test file and forge its own results. For untrusted code use a container, gVisor or nsjail around it. POSIX only.

Example:
    >>> result = run_tests("def add(a, b):\\n    return a + b", ["assert add(1, 2) == 3", "assert add(1, 1) == 3"])
    >>> result.status, result.passed, result.total
    ('completed', 1, 2)
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rag_routing.errors import InvalidInputError

#: Audit-event prefixes the child refuses (see module docstring).
DEFAULT_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "os.kill", "os.killpg", "ctypes.", "resource.setrlimit", "resource.prlimit",
                   "sys.addaudithook", "pty.")

_CHILD = r'''
import json, os, resource, sys
workdir = sys.argv[1]
job = json.load(open(os.path.join(workdir, "job.json"), encoding="utf-8"))
out = open(os.path.join(workdir, "results.jsonl"), "a", encoding="utf-8")
def report(item):
    out.write(json.dumps(item) + "\n"); out.flush()
for name, value in job["limits"].items():
    if value is not None:
        kind = getattr(resource, name)
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError) as exc:
            report({"limit_error": name + ": " + str(exc)})
blocked = tuple(job["blocked"])
def hook(event, args):
    if event.startswith(blocked):
        report({"blocked": event})
        raise PermissionError(event + " is blocked in the code-execution sandbox")
sys.addaudithook(hook)
namespace = {"__name__": "__solution__"}
try:
    exec(compile(job["code"], "solution.py", "exec"), namespace)
    load_error = None
except BaseException as exc:
    load_error = type(exc).__name__ + ": " + str(exc)[:300]
memory = load_error is not None and load_error.startswith("MemoryError")
report({"loaded": load_error is None, "error": load_error, "memory": memory})
def failure(exc):
    message = type(exc).__name__ + ": " + str(exc)[:300]
    return {"passed": False, "error": message, "memory": isinstance(exc, MemoryError)}
number = 0
for index, source in enumerate(job["tests"]):
    scope = dict(namespace)
    try:
        if load_error is not None:
            raise RuntimeError("the code failed to load: " + load_error)
        exec(compile(source, "test_%d.py" % index, "exec"), scope)
        functions = [fn for name, fn in scope.items()
                     if name.startswith("test") and callable(fn) and name not in namespace]
    except BaseException as exc:
        functions, error = None, exc
    if not functions:
        report(dict({"test": number}, **({"passed": True} if functions is not None else failure(error))))
        number += 1
        continue
    for fn in functions:
        try:
            fn()
            report({"test": number, "passed": True})
        except BaseException as exc:
            report(dict({"test": number}, **failure(exc)))
        number += 1
report({"done": True})
'''


@dataclass
class ExecutionResult:
    """What running the code and its tests did.

    Attributes:
        status: ``"completed"`` (every test ran), ``"timeout"`` (wall or CPU limit; killed) or ``"crash"``
            (the process died: a signal, ``os._exit``, ``os.abort``).
        passed, total: tests passed, tests declared (a test string counts once, or once per ``test_*``
            function it defines).
        loaded: whether the code itself ran without raising.
        tests: per test ``{"test", "passed", "error", "memory"}`` as reported.
        blocked: audit events the sandbox refused (e.g. ``"socket.__new__"``).
        memory_error: a ``MemoryError`` was raised (the memory limit was hit).
        returncode, seconds, stdout, stderr: the process outcome (output truncated to 4 kB each).
    """

    status: str
    passed: int
    total: int
    loaded: bool
    tests: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    memory_error: bool = False
    returncode: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""

    @property
    def fraction(self) -> float:
        """Share of the declared tests that passed (0.0 without tests)."""
        return self.passed / self.total if self.total else 0.0


def count_tests(tests: Sequence[str]) -> int:
    """Declared tests: one per string, or one per top-level ``test*`` function it defines."""
    total = 0
    for source in tests:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            total += 1
            continue
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
        total += max(1, len(functions))
    return total


def run_tests(code: str, tests: Sequence[str], *, timeout_s: float = 5.0, memory_mb: int | None = 512,
              cpu_s: int | None = None, file_mb: int = 16, max_files: int = 64,
              blocked: Sequence[str] = DEFAULT_BLOCKED, python: str = sys.executable) -> ExecutionResult:
    """Run ``code`` then each test (Python source: asserts or ``test_*`` functions) in a limited child process.

    Parameters:
        timeout_s: wall-clock limit; the process group is killed when it passes.
        memory_mb: address-space limit (``RLIMIT_AS``); ``None`` for none.
        cpu_s: CPU-seconds limit (default: the wall limit rounded up).
        file_mb, max_files: largest file the code may write, most open files.
        blocked: audit-event prefixes to refuse.
    """
    if os.name != "posix":
        raise InvalidInputError("code execution needs a POSIX system (it relies on resource limits)")
    if not isinstance(code, str) or isinstance(tests, str) or not all(isinstance(t, str) for t in tests):
        raise InvalidInputError("code must be a string and tests a list of strings of Python source")
    if not timeout_s > 0:
        raise InvalidInputError(f"timeout_s must be > 0, got {timeout_s!r}")
    limits = {"RLIMIT_AS": None if memory_mb is None else int(memory_mb) * 2**20,
              "RLIMIT_CPU": int(cpu_s if cpu_s is not None else max(1, -(-timeout_s // 1))),
              "RLIMIT_FSIZE": int(file_mb) * 2**20, "RLIMIT_NOFILE": int(max_files), "RLIMIT_CORE": 0}
    total = count_tests(tests)
    with tempfile.TemporaryDirectory(prefix="rag-routing-code-") as workdir:
        with open(os.path.join(workdir, "job.json"), "w", encoding="utf-8") as handle:
            json.dump({"code": code, "tests": list(tests), "limits": limits, "blocked": list(blocked)}, handle)
        started = time.perf_counter()
        with open(os.path.join(workdir, "stdout.txt"), "wb") as out, \
                open(os.path.join(workdir, "stderr.txt"), "wb") as err:
            process = subprocess.Popen([python, "-I", "-X", "utf8", "-c", _CHILD, workdir], cwd=workdir, env={},
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                       close_fds=True)
            timed_out = False
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(process)
        seconds = time.perf_counter() - started
        reports = _read_reports(os.path.join(workdir, "results.jsonl"))
        stdout, stderr = _head(os.path.join(workdir, "stdout.txt")), _head(os.path.join(workdir, "stderr.txt"))
    tests_done = [r for r in reports if "test" in r]
    done = any(r.get("done") for r in reports)
    rc = process.returncode
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL) and not done:
        status = "timeout"
    elif not done:
        status = "crash"
    else:
        status = "completed"
    loaded = any(r.get("loaded") for r in reports)
    return ExecutionResult(
        status=status, passed=sum(1 for r in tests_done if r.get("passed")), total=total, loaded=loaded,
        tests=tests_done, blocked=[r["blocked"] for r in reports if "blocked" in r],
        memory_error=any(r.get("memory") for r in reports), returncode=rc, seconds=seconds,
        stdout=stdout, stderr=stderr)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def _read_reports(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    reports = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if isinstance(item, dict):
                reports.append(item)
    return reports


def _head(path: str, limit: int = 4096) -> str:
    with open(path, "rb") as handle:
        return handle.read(limit).decode("utf-8", errors="replace")


__all__ = ["run_tests", "count_tests", "ExecutionResult", "DEFAULT_BLOCKED"]
