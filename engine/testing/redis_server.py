"""A private, throw-away redis-server on 127.0.0.1 for fault drills (tests, `supreme degrade`).

Never persistent (`--save ""`, no AOF), so a restart always comes back empty. The process
can be killed (SIGKILL), frozen (SIGSTOP: the port still accepts connections, nothing ever
answers) and thawed. Leaving the context always thaws, then stops the server.

    with RedisServer() as server:
        tier = RedisTier(server.url, "drill")
        server.freeze(); ...; server.thaw()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from types import TracebackType

from engine.errors import ServiceUnavailable

START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
_USUAL_PATHS = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


class RedisServerMissing(ServiceUnavailable):
    """No redis-server binary on this machine (callers skip or fail on it)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port: int | None = None, *, binary: str | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        found = binary or shutil.which("redis-server") or next(
            (path for path in _USUAL_PATHS if os.access(path, os.X_OK)), None)
        if found is None:
            raise RedisServerMissing("redis-server is not installed (needed for fault drills)")
        self.binary = found
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or start again, on the same port, empty) and wait until it answers PING."""
        if self.running:
            return
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.frozen = False
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break  # exited early, e.g. the port was taken meanwhile
            if _answers_ping(self.port, 0.2):
                return
            time.sleep(0.02)
        code = self.process.poll()
        self.stop()
        raise ServiceUnavailable(
            f"redis-server on port {self.port} did not answer within {self.start_timeout_s}s"
            + (f" (exited with {code})" if code is not None else ""))

    def kill(self) -> None:
        """SIGKILL: no shutdown, clients see their connections reset."""
        if self.process is None:
            return
        if self.running:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT_S)
        self.frozen = False

    def restart(self) -> None:
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server never answers."""
        if self.running:
            self.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
            self.frozen = True

    def thaw(self) -> None:
        if self.running and self.frozen:
            self.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        self.frozen = False

    def stop(self) -> None:
        """Thaw (a stopped process ignores SIGTERM until continued), terminate, then kill."""
        if self.process is None:
            return
        self.thaw()
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(STOP_TIMEOUT_S)
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
