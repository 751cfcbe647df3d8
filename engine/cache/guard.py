"""Fail-open around one remote tier: its breaker, its counters, and (for L2) the keys it
may hold stale.

`call(fn)` runs fn(tier) unless the breaker is open, and turns a TierError into None plus
counted evidence (errors, last_error, a breaker failure). A tier that must never serve an
old value (`track_stale`) remembers every key whose write failed and deletes those keys
before its next call: a Redis that missed writes while frozen or cut off comes back clean.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine.cache.base import RemoteTier, TierError, TierStats
from engine.exchange.policy import CircuitBreaker

MAX_STALE_KEYS = 100_000  # past this the whole namespace is marked instead


class GuardedTier:
    def __init__(self, tier: RemoteTier, *, breaker_threshold: int, breaker_reset_s: float,
                 track_stale: bool = False) -> None:
        self.tier = tier
        self.stats = TierStats()
        self.breaker = CircuitBreaker(name=tier.name, threshold=breaker_threshold,
                                      reset_s=breaker_reset_s)
        self.last_error: str | None = None
        self.track_stale = track_stale
        self.stale_invalidations = 0
        self._lock = threading.Lock()
        self._stale: set[str] = set()
        self._stale_overflow = False

    @property
    def status(self) -> str:
        return "ok" if self.breaker.state == "closed" else "degraded"

    @property
    def stale_pending(self) -> int:
        return len(self._stale) + (1 if self._stale_overflow else 0)

    def call(self, fn: Callable[[RemoteTier], Any]) -> Any:
        """fn(tier) with the breaker and counters; None when skipped or failed (a call
        that returns None itself comes back as True)."""
        if self.breaker.state == "open":
            self.stats.skipped += 1
            return None
        if (self._stale or self._stale_overflow) and not self._invalidate_stale():
            return None
        t0 = time.perf_counter_ns()
        try:
            result = fn(self.tier)
        except TierError as exc:
            self._failed(exc)
            return None
        self.stats.latency.record(time.perf_counter_ns() - t0)
        self.breaker.success()
        return result if result is not None else True

    def _failed(self, exc: TierError) -> None:
        self.stats.errors += 1
        self.last_error = str(exc)[:300]
        self.breaker.failure(type(exc.__cause__ or exc).__name__)

    def mark_stale(self, keys: Iterable[str]) -> None:
        if not self.track_stale:
            return
        with self._lock:
            if self._stale_overflow:
                return
            self._stale.update(keys)
            if len(self._stale) > MAX_STALE_KEYS:
                self._stale.clear()
                self._stale_overflow = True

    def forget_stale(self) -> None:
        with self._lock:
            self._stale.clear()
            self._stale_overflow = False

    def _invalidate_stale(self) -> bool:
        """Drop what the tier may hold stale before it serves again; False if it still
        fails."""
        with self._lock:
            keys, overflow = list(self._stale), self._stale_overflow
        try:
            if overflow:
                self.tier.clear_namespace()
            else:
                self.tier.delete_many(keys)
        except TierError as exc:
            self._failed(exc)
            return False
        with self._lock:
            self._stale.difference_update(keys)
            if overflow:
                self._stale_overflow = False
        self.stale_invalidations += 1 if overflow else len(keys)
        return True
