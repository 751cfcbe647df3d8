"""A TCP proxy on 127.0.0.1 whose behaviour switches at runtime, for network fault drills.

Modes (`set_mode`), applied to new connections and, chunk by chunk, to open ones:

* `pass`: forward both ways.
* `delay`: forward both ways, each chunk held `delay_ms` first.
* `blackhole`: accept, read and discard everything, never answer (nor connect upstream).
* `reset`: open connections are reset (RST via SO_LINGER 0); new ones are reset at once.
* `refuse`: stop listening (connects get ECONNREFUSED) and reset open connections, as when
  the server process is gone. Leaving `refuse` listens again on the same port.

Threads are daemons; `close()` (or leaving the context) resets every socket and joins the
threads within a bounded time. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "delay", "blackhole", "reset", "refuse"]
MODES: tuple[Mode, ...] = ("pass", "delay", "blackhole", "reset", "refuse")
_POLL_S = 0.05        # how soon a thread notices a mode change or close()
_SEND_TIMEOUT_S = 2.0  # a peer that stops reading drops the connection instead of a thread
_CHUNK = 65_536
_RST_LINGER = struct.pack("ii", 1, 0)


def _reset(sock: socket.socket | None) -> None:
    """Close with RST instead of FIN (SO_LINGER on, zero timeout)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One client connection and, unless blackholed, its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def close(self, *, rst: bool) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            for sock in (self.client, self.upstream):
                if sock is None:
                    continue
                if rst:
                    _reset(sock)
                else:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, port: int = 0,
                 mode: Mode = "pass", delay_ms: float = 0.0,
                 connect_timeout_s: float = 1.0) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout_s = connect_timeout_s
        self._mode: Mode = "pass"
        self._delay_s = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self.counters = {"accepted": 0, "upstream_failures": 0, "resets": 0,
                         "blackholed": 0, "bytes_up": 0, "bytes_down": 0}
        self._listener: socket.socket | None = self._listen(port)
        self.port = int(self._listener.getsockname()[1])
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"tcp-proxy-{self.port}")
        self._accept_thread.start()
        self.set_mode(mode, delay_ms)

    def _count(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[counter] += amount

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def active(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(_POLL_S)
        return listener

    def set_mode(self, mode: Mode, delay_ms: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; expected one of {MODES}")
        if delay_ms is not None:
            if delay_ms < 0:
                raise ValueError("delay_ms must be >= 0")
            self._delay_s = delay_ms / 1000.0
        with self._lock:
            self._mode = mode
            if mode == "refuse" and self._listener is not None:
                # shutdown wakes a thread blocked in accept(); close alone would not
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            elif mode != "refuse" and self._listener is None and not self._stopping.is_set():
                self._listener = self._listen(self.port)
            doomed = list(self._links) if mode in ("reset", "refuse") else []
        for link in doomed:
            link.close(rst=True)
            self._count("resets")

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stopping.wait(_POLL_S)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self._count("accepted")
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        mode = self._mode
        if mode in ("reset", "refuse") or self._stopping.is_set():
            _reset(client)
            self._count("resets")
            return
        upstream = None
        if mode != "blackhole":
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
            except OSError:
                self._count("upstream_failures")
                _reset(client)
                return
            upstream.settimeout(_SEND_TIMEOUT_S)
        else:
            self._count("blackholed")
        client.settimeout(_SEND_TIMEOUT_S)
        link = _Link(client, upstream)
        pumps = [(client, upstream, "bytes_up")]
        if upstream is not None:
            pumps.append((upstream, client, "bytes_down"))
        with self._lock:
            self._links.add(link)
            self._threads = [t for t in self._threads if t.is_alive()]
            for src, dst, counter in pumps:
                thread = threading.Thread(target=self._pump, args=(link, src, dst, counter),
                                          daemon=True, name=f"tcp-proxy-{self.port}-pump")
                self._threads.append(thread)
                thread.start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket | None,
              counter: str) -> None:
        try:
            while not link.closed.is_set() and not self._stopping.is_set():
                readable, _, _ = select.select([src], [], [], _POLL_S)
                if not readable:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    break
                if self._mode == "blackhole" or dst is None:
                    continue
                if self._mode == "delay" and self._delay_s > 0:
                    # wait() rather than sleep() so close() is not held up by a long delay
                    if self._stopping.wait(self._delay_s) or link.closed.is_set():
                        break
                    if self._mode == "blackhole":
                        continue
                dst.sendall(data)
                self._count(counter, len(data))
        except (OSError, ValueError):
            pass  # the link was reset or closed under us: that is how it ends
        finally:
            link.close(rst=False)
            with self._lock:
                self._links.discard(link)

    def close(self, join_timeout_s: float = 2.0) -> None:
        self._stopping.set()
        with self._lock:
            listener, self._listener = self._listener, None
            links = list(self._links)
            threads = [self._accept_thread, *self._threads]
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for link in links:
            link.close(rst=True)
        deadline = time.monotonic() + join_timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
