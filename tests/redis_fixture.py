"""A real redis-server for tests: AOF with ``appendfsync always`` in a temporary folder, on a free loopback port.

Import the fixture into a test module to use it as ``redis_server``
(``from redis_fixture import redis_server_fixture  # noqa: F401``).
Tests skip with a clear message when ``redis-server`` is not installed (CI installs the Debian package).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
SKIP_REASON = "redis-server is not installed (apt-get install -y redis-server); Redis store tests skipped"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process that can be killed and restarted on the same port and data folder."""

    def __init__(self, folder: Path, *, port: int | None = None, persistent: bool = True):
        if REDIS_SERVER is None:
            pytest.skip(SKIP_REASON)
        self.folder, self.port, self.persistent = folder, port or free_port(), persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--save", "", "--daemonize", "no", "--loglevel", "warning", "--logfile", "redis.log"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.folder}/redis.log")
            if self._ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the harshest restart (no shutdown save); only what AOF fsynced survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path):
    """A fresh persistent redis-server (AOF, fsync always) for one test; killed afterwards."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["RedisServer", "redis_server_fixture", "free_port", "REDIS_SERVER", "SKIP_REASON"]
