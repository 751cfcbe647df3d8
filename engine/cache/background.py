"""The cache's background thread: write-behind and prefetch, off the tick path.

Three inputs, all bounded:
- `publish(key, value, ttl)`, or the bare `publisher()` append for the tick path: one
  `deque.append` of a (key, value, ttl) tuple (atomic, no lock, no wake-up), about 0.1 µs;
  the thread polls every POLL_S, keeps only each key's newest value, and beyond
  `max_pending` waiting entries drops the oldest (counted).
- `queue_write(key, value, ttl)`: a write-behind entry; a key's newer value replaces its
  queued older one; a full queue drops its oldest entry (counted).
- `request_prefetch(keys)`: keys to load into L1; beyond the bound they are dropped (counted).

The owner supplies `handle(published, writes, prefetch)`, called on this thread outside
the lock. `published` holds the newest value of each key published since the last call.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

POLL_S = 0.05
Entry = tuple[Any, float | None]  # value, ttl in seconds
Handler = Callable[[dict[str, Entry], dict[str, Entry], list[str]], None]


class Background:
    def __init__(self, handle: Handler, *, max_pending: int, max_prefetch: int,
                 on_error: Callable[[BaseException], None]) -> None:
        self._handle = handle
        self._on_error = on_error
        self._max_pending = max_pending
        self._max_prefetch = max_prefetch
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Event()
        self._idle.set()
        # Unbounded between polls so the append stays bare; the thread trims it.
        self._published: deque[tuple[str, Any, float | None]] = deque()
        self._pending: dict[str, Entry] = {}
        self._prefetch: deque[str] = deque()
        self._closed = False
        self.counters = {"publish_drained": 0, "publish_dropped": 0, "write_behind_queued": 0,
                         "write_behind_dropped": 0, "prefetch_requests": 0,
                         "prefetch_dropped": 0, "background_errors": 0}
        self._thread = threading.Thread(target=self._run, name="supreme-cache", daemon=True)
        self._thread.start()

    def publish(self, key: str, value: Any, ttl_s: float | None) -> None:
        self._published.append((key, value, ttl_s))

    def publisher(self) -> Callable[[tuple[str, Any, float | None]], None]:
        """The bare append: the tick path's whole cost of publishing."""
        return self._published.append

    def queue_write(self, key: str, value: Any, ttl_s: float | None) -> None:
        with self._lock:
            pending = self._pending
            pending.pop(key, None)
            if len(pending) >= self._max_pending:
                pending.pop(next(iter(pending)))
                self.counters["write_behind_dropped"] += 1
            pending[key] = (value, ttl_s)
            self.counters["write_behind_queued"] += 1
            self._idle.clear()
            self._wake.notify()

    def request_prefetch(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        with self._lock:
            room = max(0, self._max_prefetch - len(self._prefetch))
            if room < len(wanted):
                self.counters["prefetch_dropped"] += len(wanted) - room
                wanted = wanted[:room]
            if wanted:
                self._prefetch.extend(wanted)
                self.counters["prefetch_requests"] += len(wanted)
                self._idle.clear()
                self._wake.notify()

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["published"] = (out["publish_drained"] + out["publish_dropped"]
                            + len(self._published))
        return out

    def _take_published(self) -> dict[str, Entry]:
        latest: dict[str, Entry] = {}
        published = self._published
        overflow = len(published) - self._max_pending
        for _ in range(max(0, overflow)):
            published.popleft()
        if overflow > 0:
            self.counters["publish_dropped"] += overflow
        n = len(published)
        for _ in range(n):
            key, value, ttl_s = published.popleft()
            latest[key] = (value, ttl_s)
        self.counters["publish_drained"] += n
        return latest

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._pending or self._prefetch or self._published
                           or self._closed):
                    self._idle.set()
                    self._wake.wait(POLL_S)
                published = self._take_published()
                writes, self._pending = self._pending, {}
                prefetch = list(dict.fromkeys(self._prefetch))
                self._prefetch.clear()
                closing = self._closed
            if published or writes or prefetch:
                try:
                    self._handle(published, writes, prefetch)
                except Exception as exc:  # the thread must outlive any one bad batch
                    self.counters["background_errors"] += 1
                    self._on_error(exc)
            if closing:
                with self._lock:
                    if not (self._pending or self._published):
                        self._idle.set()
                        return

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued or published so far is handled; False on timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            with self._lock:
                if self._idle.is_set() and not (self._pending or self._prefetch
                                                 or self._published):
                    return True
                self._idle.clear()
                self._wake.notify()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._idle.wait(remaining):
                return False
        return False

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)
