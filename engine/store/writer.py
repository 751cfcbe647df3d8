"""StoreWriter: batches records off the tick path into the store on a background thread.

The tick path only takes a ticket and appends to a deque under an uncontended lock.
Tickets give the queues one global order: batches are taken oldest-first across the
kinds, so "every ticket up to N is committed" is a single number that `barrier()` waits on.

When a commit fails (database down, locked, network gone) the batch goes back to the
front of its queues and is retried with backoff; writes are idempotent, so a batch that
did commit before the error surfaced is harmless to replay. The queue is bounded by
shedding the oldest equity rows first, then the oldest signals; orders, trades and
positions are never dropped, so the bound can be exceeded by them alone.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from engine.errors import StoreError
from engine.store.base import Store
from engine.store.schema import (
    EquityRecord,
    OrderRecord,
    PositionRecord,
    SignalRecord,
    TradeRecord,
)

_SIGNAL, _ORDER, _TRADE, _EQUITY = range(4)
_Entry = tuple[int, Any]  # (ticket, record)


def _pop_through(q: deque[_Entry], cutoff: int) -> list[_Entry]:
    out = []
    while q and q[0][0] <= cutoff:
        out.append(q.popleft())
    return out


@dataclass(frozen=True, slots=True)
class WriterStats:
    rows_written: int
    batches: int
    queued: int
    max_queue_depth: int
    errors: int
    dropped_equity: int
    dropped_signals: int
    commit_seconds: float
    max_commit_seconds: float


@dataclass(slots=True)
class _Batch:
    entries: tuple[list[_Entry], ...]
    positions: list[_Entry]
    cutoff: int  # every ticket <= cutoff is in this batch or was shed

    def __len__(self) -> int:
        return sum(map(len, self.entries)) + len(self.positions)


class StoreWriter:
    def __init__(
        self,
        store_factory: Callable[[], Store],
        flush_interval_s: float = 0.25,
        max_batch: int = 5000,
        max_queue: int = 100_000,
        *,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 2.0,
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise StoreError("StoreWriter needs max_batch >= 1 and max_queue >= 1")
        self._factory = store_factory
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s

        self._lock = threading.Lock()
        self._queues: tuple[deque[_Entry], ...] = (deque(), deque(), deque(), deque())
        self._positions: dict[tuple[str, str], _Entry] = {}
        self._seq = 0
        self._size = 0
        self._closing = False

        self._committed = 0
        self._committed_cv = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._abandon = threading.Event()

        self._rows = self._batches = self._errors = self._max_depth = 0
        self._dropped_equity = self._dropped_signals = 0
        self._commit_s = self._max_commit_s = 0.0
        self._healthy = True
        self._last_error: str | None = None
        # Read on every tick without the lock: a stale value only delays backpressure a tick.
        self.backlogged = False

        self._store: Store | None = None
        self._thread = threading.Thread(target=self._run, name="supreme-store-writer",
                                        daemon=True)
        self._thread.start()

    # --- tick path -----------------------------------------------------------------

    def _put(self, kind: int, rec: Any) -> None:
        with self._lock:
            if self._closing:
                raise StoreError("StoreWriter is closed")
            self._seq += 1
            self._queues[kind].append((self._seq, rec))
            self._size += 1
            if self._size > self._max_depth:
                self._max_depth = self._size
            if self._size > self._max_queue:
                self._shed()
            full = self._size >= self._max_batch
        if full:
            self.backlogged = True
            self._wake.set()

    def add_signal(self, rec: SignalRecord | Callable[[], SignalRecord]) -> None:
        """A record, or a zero-argument callable that builds it on the writer thread.

        The callable form keeps costly work (formatting a reason sentence) off the tick path.
        """
        self._put(_SIGNAL, rec)

    def add_order(self, rec: OrderRecord) -> None:
        self._put(_ORDER, rec)

    def add_trade(self, rec: TradeRecord) -> None:
        self._put(_TRADE, rec)

    def add_equity(self, rec: EquityRecord) -> None:
        self._put(_EQUITY, rec)

    def set_position(self, rec: PositionRecord) -> None:
        """Only the latest position per (symbol, mode) is kept until written."""
        with self._lock:
            if self._closing:
                raise StoreError("StoreWriter is closed")
            self._seq += 1
            self._positions[(rec.symbol, rec.mode)] = (self._seq, rec)

    def _shed(self) -> None:
        # Caller holds the lock. Equity is a sampled curve, so a gap costs least.
        if self._queues[_EQUITY]:
            self._queues[_EQUITY].popleft()
            self._dropped_equity += 1
        elif self._queues[_SIGNAL]:
            self._queues[_SIGNAL].popleft()
            self._dropped_signals += 1
        else:
            return
        self._size -= 1

    # --- waiting -------------------------------------------------------------------

    def barrier(self, timeout: float = 5.0) -> bool:
        """Block until everything enqueued before this call is committed (shed rows
        count as done); False if that did not happen within `timeout` seconds."""
        with self._lock:
            ticket = self._seq
        deadline = time.monotonic() + timeout
        with self._committed_cv:
            if self._committed >= ticket:
                return True
            self._wake.set()
            while self._committed < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._committed_cv.wait(min(remaining, 0.5))
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        return self.barrier(timeout)

    def wait_for_room(self, timeout: float = 30.0) -> bool:
        """Backpressure: block while a healthy store has a full batch or more queued.

        A producer faster than the store (a replay at full speed) then runs at the store's
        pace instead of growing the queue until rows are shed. While the store is failing
        this returns at once: trading must not stop for it, and the queue bound applies.
        """
        deadline = time.monotonic() + timeout
        low_water = self._max_batch // 2
        with self._committed_cv:
            while self._healthy and self._size > low_water and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._committed_cv.wait(min(remaining, 0.5))
        self.backlogged = self._size >= self._max_batch
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Final flush, then stop the thread. True if nothing was left unwritten."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            self._thread.join(max(1.0, timeout / 10))
        with self._lock:
            return self._size == 0 and not self._positions

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- health --------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                rows_written=self._rows, batches=self._batches,
                queued=self._size + len(self._positions), max_queue_depth=self._max_depth,
                errors=self._errors, dropped_equity=self._dropped_equity,
                dropped_signals=self._dropped_signals, commit_seconds=self._commit_s,
                max_commit_seconds=self._max_commit_s)

    # --- writer thread -------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        try:
            while True:
                self._wake.clear()  # before taking, so a later wake-up is never lost
                failures = 0 if self._write_once() else failures + 1
                with self._lock:
                    pending = self._size > 0 or bool(self._positions)
                    backlog = self._size >= self._max_batch
                    closing = self._closing
                if self._abandon.is_set() or (closing and not pending):
                    return
                if failures:
                    delay = min(self._retry_max_s, self._retry_initial_s * 2 ** (failures - 1))
                    self._abandon.wait(delay)
                elif not (backlog or closing):
                    self._wake.wait(self._flush_interval_s)
        finally:
            self._drop_store()

    def _take(self) -> _Batch:
        with self._lock:
            if self._size <= self._max_batch:
                entries = tuple(list(q) for q in self._queues)
                for q in self._queues:
                    q.clear()
                return self._finish_take(entries, self._seq)
            # A backlog: take the max_batch oldest tickets across the kinds. They are all
            # among the first max_batch of each queue; rank them outside the lock so the
            # tick path never waits on the sort.
            heads = [list(itertools.islice(q, self._max_batch)) for q in self._queues]
        merged = heapq.merge(*(map(itemgetter(0), h) for h in heads))
        cutoff = next(itertools.islice(merged, self._max_batch - 1, None))
        with self._lock:
            # Popping by ticket (not by count) stays right if rows were shed meanwhile.
            entries = tuple(_pop_through(q, cutoff) for q in self._queues)
            return self._finish_take(entries, cutoff)

    def _finish_take(self, entries: tuple[list[_Entry], ...], cutoff: int) -> _Batch:
        # Caller holds the lock.
        self._size -= sum(map(len, entries))
        positions = [e for e in self._positions.values() if e[0] <= cutoff]
        for _, rec in positions:
            del self._positions[(rec.symbol, rec.mode)]
        return _Batch(entries, positions, cutoff)

    def _requeue(self, batch: _Batch) -> None:
        with self._lock:
            for q, entries in zip(self._queues, batch.entries, strict=True):
                q.extendleft(reversed(entries))
                self._size += len(entries)
            for entry in batch.positions:
                rec = entry[1]
                self._positions.setdefault((rec.symbol, rec.mode), entry)
            while self._size > self._max_queue:
                before = self._size
                self._shed()
                if self._size == before:
                    break

    def _write_once(self) -> bool:
        batch = self._take()
        if len(batch):
            try:
                if self._store is None:
                    self._store = self._factory()
                started = time.perf_counter()
                sig, orders, trades, equity = ([r for _, r in e] for e in batch.entries)
                sig = [r if isinstance(r, SignalRecord) else r() for r in sig]
                self._store.write_batch(signals=sig, orders=orders, trades=trades,
                                        equity=equity, positions=[r for _, r in batch.positions])
                elapsed = time.perf_counter() - started
            except Exception as exc:  # the thread must outlive any failure
                self._requeue(batch)
                self._drop_store()
                with self._lock:
                    self._errors += 1
                    self._healthy = False
                    self._last_error = str(exc) or type(exc).__name__
                return False
            with self._lock:
                self._rows += len(batch)
                self._batches += 1
                self._commit_s += elapsed
                self._max_commit_s = max(self._max_commit_s, elapsed)
                self._healthy = True
        with self._committed_cv:
            self._committed = max(self._committed, batch.cutoff)
            self._committed_cv.notify_all()
        self.backlogged = self._size >= self._max_batch
        return True

    def _drop_store(self) -> None:
        # A fresh connection per retry: the old one may be broken or stuck mid-lock.
        if self._store is not None:
            with suppress(Exception):
                self._store.close()
            self._store = None
