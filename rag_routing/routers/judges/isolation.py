"""OS-level isolation for the code-execution sandbox: the bubblewrap (``bwrap``) command line, and a run-time
probe of whether it works here.

The judged code runs under ``bwrap`` with every namespace unshared (user, PID, network, IPC, UTS, cgroup), all
capabilities dropped, an empty environment (``--clearenv``; ``bwrap`` itself is started with an empty
environment too, so ``/proc/1/environ`` inside shows nothing), a read-only view of only the directories the
interpreter needs (``/usr`` and the Python prefixes, never ``/etc``, ``/home``, ``/root`` or the caller's working
tree; bound on top of the scratch ``tmpfs`` so that a venv under ``/tmp`` stays visible), its own size-limited
``tmpfs`` as ``/tmp`` (the working directory), a fresh ``/proc`` and a minimal
``/dev``. The sandbox dies with its parent, and killing the parent kills the PID namespace, so a ``setsid``
grandchild cannot outlive the time limit.

Whether it works is decided at run time (``bwrap`` may be missing, or the kernel may refuse unprivileged user
namespaces, as Docker's default seccomp profile does): :func:`isolation_status` runs the real command line once
on ``true``-like Python and caches the answer.

Example:
    >>> status = isolation_status()
    >>> status.available in (True, False) and isinstance(status.reason, str)
    True
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

#: Where the job file is mounted (read-only) and where the results file is mounted (write, size-limited).
JOB_DIR = "/job"
#: The sandbox's writable scratch directory (a tmpfs) and its working directory.
SCRATCH_DIR = "/tmp"
#: ``isolation=`` value that runs the code WITHOUT OS-level isolation (audit hook and rlimits only).
UNSAFE_NO_ISOLATION = "none-i-accept-the-risk"
#: ``isolation=`` value for bubblewrap (the default).
BWRAP = "bwrap"
ISOLATION_CHOICES = (BWRAP, UNSAFE_NO_ISOLATION)

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class IsolationStatus:
    """Whether bubblewrap isolation works here; ``reason`` says why not (or which ``bwrap`` is used)."""

    available: bool
    reason: str
    bwrap: str | None = None
    extra_flags: tuple[str, ...] = ()


def _python_roots(python: str) -> list[str]:
    """Directories the interpreter needs: its prefixes, outside ``/usr`` (pyenv, a venv, a conda env)."""
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    binary = os.path.realpath(python)
    roots.add(os.path.dirname(os.path.dirname(binary)))
    if os.path.isabs(python):
        roots.add(os.path.dirname(os.path.dirname(os.path.abspath(python))))
    covered = ("/usr/", "/proc/", "/dev/")  # /usr is bound already; /proc and /dev are the sandbox's own
    return sorted(r for r in roots if r not in ("/", "", *_SYSTEM_DIRS, "/proc", "/dev")
                  and not r.startswith(covered))


def _system_flags() -> list[str]:
    flags: list[str] = []
    for folder in _SYSTEM_DIRS:
        if os.path.islink(folder):
            flags += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            flags += ["--ro-bind", folder, folder]
    return flags


def _python_flags(python: str) -> list[str]:
    """Read-only binds of the interpreter's roots. They come after the scratch ``tmpfs``: an interpreter that
    lives under ``/tmp`` (a venv in a CI checkout there) would otherwise be hidden by it."""
    # a root that IS the scratch directory is left out: binding it would show the host's /tmp (the probe then
    # finds no interpreter and the judge refuses, which is the safe answer)
    return [flag for root in _python_roots(python) if root != SCRATCH_DIR for flag in ("--ro-bind", root, root)]


def bwrap_command(bwrap: str, python: str, argv: Sequence[str], *, job_file: str, results_file: str,
                  scratch_mb: int, extra_flags: Sequence[str] = ()) -> list[str]:
    """The full command: ``bwrap [isolation flags] python argv...`` with the job and results files mounted
    at :data:`JOB_DIR`. ``extra_flags`` are the optional flags the probe found supported (``--size``,
    ``--disable-userns``)."""
    size = ["--size", str(int(scratch_mb) * 2**20)] if "--size" in extra_flags else []
    no_nested = ["--disable-userns"] if "--disable-userns" in extra_flags else []
    return [bwrap, "--unshare-all", "--unshare-user", *no_nested, "--die-with-parent", "--new-session",
            "--clearenv", "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            *_system_flags(), "--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", SCRATCH_DIR,
            *_python_flags(python), "--dir", JOB_DIR, "--ro-bind", job_file, f"{JOB_DIR}/job.json",
            "--bind", results_file, f"{JOB_DIR}/results.jsonl", "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", SCRATCH_DIR, python, *argv]


def _probe(bwrap: str, python: str, extra_flags: Sequence[str]) -> tuple[bool, str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rag-routing-probe-") as folder:
        job, results = os.path.join(folder, "job.json"), os.path.join(folder, "results.jsonl")
        for path in (job, results):
            open(path, "w").close()
        command = bwrap_command(bwrap, python, ["-I", "-c", "import os; print(os.getuid())"], job_file=job,
                                results_file=results, scratch_mb=8, extra_flags=extra_flags)
        try:
            done = subprocess.run(command, env={}, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{type(exc).__name__}: {exc}"
    if done.returncode != 0 or done.stdout.strip() != b"65534":
        return False, done.stderr.decode("utf-8", "replace").strip()[:300] or f"exit status {done.returncode}"
    return True, ""


@functools.lru_cache(maxsize=8)
def _status_for(bwrap: str | None, python: str) -> IsolationStatus:
    if bwrap is None:
        return IsolationStatus(False, "bubblewrap ('bwrap') is not installed (Debian/Ubuntu: apt-get install "
                                      "bubblewrap)")
    errors = []
    for extra in (("--size", "--disable-userns"), ("--size",), ()):
        ok, error = _probe(bwrap, python, extra)
        if ok:
            return IsolationStatus(True, f"bubblewrap at {bwrap}", bwrap, tuple(extra))
        errors.append(error)
    return IsolationStatus(False, f"bubblewrap at {bwrap} cannot start a sandbox here (are unprivileged user "
                                  f"namespaces allowed? kernel.unprivileged_userns_clone / a container's seccomp "
                                  f"profile may refuse them): {errors[-1]}", bwrap)


def isolation_status(python: str = sys.executable) -> IsolationStatus:
    """Whether bubblewrap isolation works on this machine for ``python`` (probed once, then cached)."""
    return _status_for(shutil.which("bwrap"), python)


def clear_isolation_cache() -> None:
    """Forget the probe's answer (after installing bubblewrap or changing the kernel setting)."""
    _status_for.cache_clear()


__all__ = ["IsolationStatus", "isolation_status", "clear_isolation_cache", "bwrap_command", "UNSAFE_NO_ISOLATION",
           "BWRAP", "ISOLATION_CHOICES", "JOB_DIR", "SCRATCH_DIR"]
