"""Run generated Python code and its tests in a child process under OS-level isolation, with time, memory,
CPU and file limits, no network and an empty environment.

**Isolation** (the default, ``isolation="bwrap"``): the child runs under bubblewrap (:mod:`.isolation`) in its
own user, PID, network, IPC and UTS namespaces with every capability dropped, an empty environment, a read-only
view of ``/usr`` and the Python prefixes only (no ``/etc``, no home directories, no caller's files), a
size-limited ``tmpfs`` as its working directory, and no network at all (a private loopback). The whole sandbox
(its PID namespace, so ``setsid`` grandchildren too) is killed at the wall-clock limit. Before the code runs the
child sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE`` and no core dumps (soft =
hard, so they cannot be raised again), and installs an audit hook that refuses sockets, subprocesses,
``fork``/``exec``, ``os.kill`` and ``ctypes`` — defence in depth, not the boundary.

Where bubblewrap is missing or the kernel refuses user namespaces, :func:`run_tests` raises
:class:`~rag_routing.errors.SandboxUnavailableError` rather than run the code unisolated; pass
``isolation="none-i-accept-the-risk"`` to run it anyway with only the rlimits and the audit hook (which native
code can bypass), and a warning says so. What isolation does not stop: the code can read its own tests and forge
its results (the score is only as trustworthy as the tests' secrecy), and a fork bomb is bounded by the time
limit, not by a process count. POSIX only.

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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rag_routing.errors import InvalidInputError, SandboxUnavailableError
from rag_routing.routers.judges.isolation import (
    BWRAP,
    ISOLATION_CHOICES,
    JOB_DIR,
    UNSAFE_NO_ISOLATION,
    bwrap_command,
    isolation_status,
)
from rag_routing.validation import check_choice

#: Audit-event prefixes the child refuses (see module docstring).
DEFAULT_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "os.kill", "os.killpg", "ctypes.", "resource.setrlimit", "resource.prlimit",
                   "sys.addaudithook", "pty.")

_CHILD = r'''
import json, os, resource, sys
jobdir = sys.argv[1]
job = json.load(open(os.path.join(jobdir, "job.json"), encoding="utf-8"))
out = open(os.path.join(jobdir, "results.jsonl"), "a", encoding="utf-8")
def report(item):
    out.write(json.dumps(item) + "\n"); out.flush()
for name, value in job["limits"].items():
    if value is not None:
        kind = getattr(resource, name)
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError) as exc:
            report({"limit_error": name + ": " + str(exc)})
def install(blocked, report):
    # the block list lives in this closure: the judged code cannot rebind it through sys.modules["__main__"]
    def hook(event, args):
        if event.startswith(blocked):
            report({"blocked": event})
            raise PermissionError(event + " is blocked in the code-execution sandbox")
    sys.addaudithook(hook)
install(tuple(job["blocked"]), report)
del install
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
        returncode, seconds, stdout, stderr: the process outcome (output truncated to 4 kB each); under
            bubblewrap a child killed by signal ``n`` reports ``-n``, as :mod:`subprocess` does.
        isolation: ``"bwrap"`` or ``"none-i-accept-the-risk"`` (ran without OS-level isolation).
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
    isolation: str = BWRAP

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
              cpu_s: int | None = None, file_mb: int = 16, max_files: int = 64, scratch_mb: int = 64,
              blocked: Sequence[str] = DEFAULT_BLOCKED, python: str = sys.executable,
              isolation: str = BWRAP) -> ExecutionResult:
    """Run ``code`` then each test (Python source: asserts or ``test_*`` functions) in an isolated child.

    Parameters:
        timeout_s: wall-clock limit; the whole sandbox is killed when it passes.
        memory_mb: address-space limit (``RLIMIT_AS``); ``None`` for none.
        cpu_s: CPU-seconds limit (default: the wall limit rounded up).
        file_mb, max_files: largest file the code may write, most open files.
        scratch_mb: size of the sandbox's writable ``tmpfs`` (its working directory).
        blocked: audit-event prefixes to refuse (defence in depth inside the sandbox).
        isolation: ``"bwrap"`` (default; raises :class:`~rag_routing.errors.SandboxUnavailableError` where
            bubblewrap cannot run) or ``"none-i-accept-the-risk"`` to run without OS-level isolation.
    """
    if os.name != "posix":
        raise InvalidInputError("code execution needs a POSIX system (it relies on resource limits)")
    if not isinstance(code, str) or isinstance(tests, str) or not all(isinstance(t, str) for t in tests):
        raise InvalidInputError("code must be a string and tests a list of strings of Python source")
    if not timeout_s > 0:
        raise InvalidInputError(f"timeout_s must be > 0, got {timeout_s!r}")
    check_choice("isolation", isolation, ISOLATION_CHOICES)
    sandbox = isolation_status(python) if isolation == BWRAP else None
    if sandbox is not None and not sandbox.available:
        raise SandboxUnavailableError(
            f"refusing to run judged code without OS-level isolation: {sandbox.reason}. Install bubblewrap and "
            f"allow unprivileged user namespaces, or pass isolation={UNSAFE_NO_ISOLATION!r} to run it with only "
            "resource limits and an audit hook (untrusted code can then read your files and environment)")
    if sandbox is None:
        warnings.warn("running judged code WITHOUT OS-level isolation (isolation="
                      f"{UNSAFE_NO_ISOLATION!r}): it can read files and the parent's environment", stacklevel=2)
    limits = {"RLIMIT_AS": None if memory_mb is None else int(memory_mb) * 2**20,
              "RLIMIT_CPU": int(cpu_s if cpu_s is not None else max(1, -(-timeout_s // 1))),
              "RLIMIT_FSIZE": int(file_mb) * 2**20, "RLIMIT_NOFILE": int(max_files), "RLIMIT_CORE": 0}
    total = count_tests(tests)
    with tempfile.TemporaryDirectory(prefix="rag-routing-code-") as workdir:
        job_file, results_file = os.path.join(workdir, "job.json"), os.path.join(workdir, "results.jsonl")
        with open(job_file, "w", encoding="utf-8") as handle:
            json.dump({"code": code, "tests": list(tests), "limits": limits, "blocked": list(blocked)}, handle)
        open(results_file, "w").close()
        argv = ["-I", "-X", "utf8", "-c", _CHILD]
        if sandbox is not None:
            command = bwrap_command(sandbox.bwrap, python, [*argv, JOB_DIR], job_file=job_file,
                                    results_file=results_file, scratch_mb=scratch_mb, extra_flags=sandbox.extra_flags)
        else:
            command = [python, *argv, workdir]
        started = time.perf_counter()
        with open(os.path.join(workdir, "stdout.txt"), "wb") as out, \
                open(os.path.join(workdir, "stderr.txt"), "wb") as err:
            process = subprocess.Popen(command, cwd=workdir, env={}, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=err, start_new_session=True, close_fds=True)
            timed_out = False
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(process)
        seconds = time.perf_counter() - started
        reports = _read_reports(results_file)
        stdout, stderr = _head(os.path.join(workdir, "stdout.txt")), _head(os.path.join(workdir, "stderr.txt"))
    tests_done = [r for r in reports if "test" in r]
    done = any(r.get("done") for r in reports)
    rc = process.returncode
    if sandbox is not None and rc is not None and 128 < rc < 128 + 65:
        rc = -(rc - 128)  # bwrap reports a child killed by signal n as exit status 128 + n
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
        stdout=stdout, stderr=stderr, isolation=BWRAP if sandbox is not None else UNSAFE_NO_ISOLATION)


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
