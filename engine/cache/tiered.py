"""The tiered cache: L1 (in process, neuromorphic eviction) → L2 (Redis) → L3 (store).

Reads go L1 → L2 → L3 and promote a hit into the faster tiers. A durable write (anything
that cannot be re-derived) goes to L3 first and raises if L3 refuses it; L1 and L2 are then
filled best effort, so L2 never holds the only copy. Market data that can be fetched again
is written behind: L1 at once, L2 and L3 from the background thread, off the tick path.

Fail-open: every L2 and L3 call is bounded by its tier's timeout, and each tier has a
circuit breaker. While a breaker is open the tier is skipped (counted) and the others
serve; after `breaker_reset_s` one call probes it back. A key whose L2 write failed is
remembered, and deleted from L2 before L2 serves again, so a recovered Redis never hands
out a value older than L3's (no stale reads; engine/cache/guard.py).

L2 and L3 hold an envelope `[expires_at_ms | None, value]`, so a promoted entry keeps its
remaining time to live.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.cache.background import Background, Entry
from engine.cache.base import RemoteTier, TierError, TierStats, check_key, decode, encode
from engine.cache.guard import GuardedTier
from engine.errors import ConfigError, StoreError
from engine.neuromorphic import NeuromorphicCacheManager

_MISSING: Any = object()
L1_LATENCY_SAMPLE = 16  # time one L1 read in 16: timing every one would double its cost


@dataclass(frozen=True)
class CacheSettings:
    env: str = "default"
    l1_capacity: int = 10_000
    l2_max_entries: int = 100_000
    redis_url: str | None = None
    redis_timeout_s: float = 0.25
    l3_timeout_s: float = 1.0
    breaker_threshold: int = 3
    breaker_reset_s: float = 5.0
    prefetch: bool = True
    learning_rate: float = 0.15
    decay_rate: float = 0.005
    write_behind_max: int = 10_000
    prefetch_queue_max: int = 1_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _get_many(tier: RemoteTier, keys: list[str]) -> dict[str, bytes]:
    return tier.get_many(keys)


def _set_many(tier: RemoteTier, items: Mapping[str, bytes], ttl_s: float | None) -> None:
    tier.set_many(items, ttl_s)


class TieredCache:
    def __init__(self, settings: CacheSettings, *, l2: RemoteTier | None = None,
                 l3: RemoteTier | None = None,
                 learner: NeuromorphicCacheManager | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.l1 = learner or NeuromorphicCacheManager(
            capacity=settings.l1_capacity, learning_rate=settings.learning_rate,
            decay_rate=settings.decay_rate)
        self.l1_stats = TierStats()
        guard = functools.partial(GuardedTier, breaker_threshold=settings.breaker_threshold,
                                  breaker_reset_s=settings.breaker_reset_s)
        self.l2 = guard(l2, track_stale=True) if l2 is not None else None
        self.l3 = guard(l3) if l3 is not None else None
        self.counters = {"gets": 0, "sets": 0, "write_behind_written": 0,
                         "write_behind_failed": 0, "prefetch_loaded": 0,
                         "l3_write_failures": 0, "publish_rejected": 0}
        self._bg = Background(self._background, max_pending=settings.write_behind_max,
                              max_prefetch=settings.prefetch_queue_max,
                              on_error=self._background_failed)
        self.trace: list[str] | None = None
        self._l1_tick = 0
        self._closed = False

    # --- reads ------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        if self.trace is not None:
            self.trace.append(key)
        self.counters["gets"] += 1
        self._l1_tick += 1
        if self._l1_tick % L1_LATENCY_SAMPLE:
            value = self.l1.get(key, _MISSING)
        else:
            t0 = time.perf_counter_ns()
            value = self.l1.get(key, _MISSING)
            self.l1_stats.latency.record(time.perf_counter_ns() - t0)
        if value is _MISSING:
            self.l1_stats.misses += 1
            value = self._read_through([key]).get(key, default)
        else:
            self.l1_stats.hits += 1
        if self.settings.prefetch:
            self._learn_and_prefetch(key)
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if self.trace is not None:
            self.trace.extend(keys)
        self.counters["gets"] += len(keys)
        found: dict[str, Any] = {}
        missing: list[str] = []
        l1 = self.l1
        self._l1_tick += 1
        timed = not self._l1_tick % L1_LATENCY_SAMPLE
        for key in keys:
            t0 = time.perf_counter_ns() if timed else 0
            value = l1.get(key, _MISSING)
            if timed:
                self.l1_stats.latency.record(time.perf_counter_ns() - t0)
            if value is _MISSING:
                missing.append(key)
            else:
                found[key] = value
        self.l1_stats.hits += len(found)
        self.l1_stats.misses += len(missing)
        if missing:
            found.update(self._read_through(missing))
        if self.settings.prefetch:
            for key in keys:
                self._learn_and_prefetch(key)
        return found

    def _read_through(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        promote_l2: dict[str, bytes] = {}
        rest = keys
        for tier in (self.l2, self.l3):
            if tier is None or not rest:
                continue
            raw = tier.call(functools.partial(_get_many, keys=rest))
            if raw is None:
                continue
            tier.stats.hits += len(raw)
            tier.stats.misses += len(rest) - len(raw)
            for key, blob in raw.items():
                value, expires_ms = self._unwrap(blob)
                if value is _MISSING:
                    continue
                found[key] = value
                self._fill_l1(key, value, expires_ms)
                if tier is self.l3:
                    promote_l2[key] = blob
            rest = [k for k in rest if k not in raw]
        if promote_l2 and self.l2 is not None:
            self._l2_write(promote_l2)
        return found

    def _unwrap(self, blob: bytes) -> tuple[Any, int | None]:
        try:
            expires_ms, value = decode(blob)
        except Exception:  # a foreign or corrupt value under our namespace reads as a miss
            return _MISSING, None
        if expires_ms is not None and expires_ms <= _now_ms():
            return _MISSING, None
        return value, expires_ms

    def _fill_l1(self, key: str, value: Any, expires_ms: int | None,
                 prefetched: bool = False) -> None:
        expires_at = None if expires_ms is None else \
            self.clock() + (expires_ms - _now_ms()) / 1000.0
        self.l1.put(key, value, prefetched=prefetched, expires_at=expires_at)

    # --- writes -----------------------------------------------------------------------

    def set(self, key: str, value: Any, *, ttl_s: float | None = None,
            durable: bool = True) -> None:
        """Durable (default): L3 first, raising StoreError if L3 cannot take it; then L1
        and L2 best effort. durable=False (re-derivable market data): L1 now, L2 and L3
        written behind by the background thread."""
        check_key(key)
        self.counters["sets"] += 1
        expires_ms = None if ttl_s is None else _now_ms() + int(ttl_s * 1000)
        blob = encode([expires_ms, value])
        # L1 holds the decoded form, so a value reads back the same from every tier
        # (a tuple comes back as a list whichever tier served it).
        value = decode(blob)[1]
        if not durable:
            self._fill_l1(key, value, expires_ms)
            self._bg.queue_write(key, value, ttl_s)
            return
        if self.l3 is not None:
            try:
                t0 = time.perf_counter_ns()
                self.l3.tier.set_many({key: blob}, ttl_s)
                self.l3.stats.latency.record(time.perf_counter_ns() - t0)
                self.l3.stats.writes += 1
            except TierError as exc:
                self.l3.stats.write_errors += 1
                self.counters["l3_write_failures"] += 1
                raise StoreError(f"cache: durable write of {key!r} failed: {exc}") from exc
        self._fill_l1(key, value, expires_ms)
        if self.l2 is not None:
            self._l2_write({key: blob}, ttl_s)

    def publish(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Write-behind for the tick path: the background thread fills L1, L2 and L3 within
        engine.cache.background.POLL_S. Only for re-derivable data; a full queue drops its
        oldest entry."""
        if self.trace is not None:
            self.trace.append(key)
        self._bg.publish(key, value, ttl_s)

    def publisher(self) -> Callable[[tuple[str, Any, float | None]], None]:
        """`publish` as a bare append of (key, value, ttl_s) for the tick path; with a trace
        being recorded it goes through `publish`, which records the key."""
        if self.trace is not None:
            return lambda entry: self.publish(*entry)
        return self._bg.publisher()

    def delete(self, key: str) -> None:
        self.l1.delete(key)
        if self.l2 is not None and self.l2.call(lambda t: t.delete_many([key])) is None:
            self.l2.mark_stale([key])
        self._bg.flush(1.0)  # a queued write of this key must not land after the delete
        if self.l3 is not None:
            try:
                self.l3.tier.delete_many([key])
            except TierError as exc:
                raise StoreError(f"cache: delete of {key!r} failed on L3: {exc}") from exc

    def get_or_load(self, key: str, loader: Callable[[], Any], *, ttl_s: float | None = None,
                    durable: bool = False) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = loader()
            self.set(key, value, ttl_s=ttl_s, durable=durable)
        return value

    def _l2_write(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None:
        assert self.l2 is not None
        if self.l2.call(lambda t: t.set_many(items, ttl_s)) is None:
            self.l2.stats.write_errors += 1
            self.l2.mark_stale(items)
        else:
            self.l2.stats.writes += len(items)

    # --- fail-open calls --------------------------------------------------------------

    # --- learning and prefetch -------------------------------------------------------

    def _learn_and_prefetch(self, key: str) -> None:
        l1 = self.l1
        wanted = [k for k in l1.observe(key) if not l1.contains(k)]
        if not wanted or (self.l2 is None and self.l3 is None):
            return
        self._bg.request_prefetch(wanted)

    # --- the background thread -------------------------------------------------------

    def _background(self, published: dict[str, Entry], writes: dict[str, Entry],
                    prefetch: list[str]) -> None:
        """Runs on the background thread: published values into L1, then write-behind to
        L2 and L3, then prefetches."""
        now = self.clock()
        for key, (value, ttl_s) in published.items():
            try:
                value = decode(encode(value))  # the same form every tier hands back
            except ConfigError:
                self.counters["publish_rejected"] += 1
                continue
            self.l1.put(key, value, expires_at=None if ttl_s is None else now + ttl_s)
            writes[key] = (value, ttl_s)
        if writes:
            self._write_behind(writes)
        if prefetch:
            self._prefetch(prefetch)

    def _background_failed(self, exc: BaseException) -> None:
        if self.l3 is not None:
            self.l3.last_error = f"background: {exc}"[:300]

    def _write_behind(self, batch: dict[str, tuple[Any, float | None]]) -> None:
        by_ttl: dict[float | None, dict[str, bytes]] = {}
        now = _now_ms()
        for key, (value, ttl_s) in batch.items():
            expires = None if ttl_s is None else now + int(ttl_s * 1000)
            by_ttl.setdefault(ttl_s, {})[key] = encode([expires, value])
        for ttl_s, items in by_ttl.items():
            if self.l2 is not None:
                self._l2_write(items, ttl_s)
            if self.l3 is not None:
                if self.l3.call(functools.partial(_set_many, items=items, ttl_s=ttl_s)):
                    self.l3.stats.writes += len(items)
                    self.counters["write_behind_written"] += len(items)
                else:
                    self.l3.stats.write_errors += len(items)
                    self.counters["write_behind_failed"] += len(items)
            else:
                self.counters["write_behind_written"] += len(items)

    def _prefetch(self, keys: list[str]) -> None:
        rest = [k for k in keys if not self.l1.contains(k)]
        for tier in (self.l2, self.l3):
            if tier is None or not rest:
                continue
            raw = tier.call(functools.partial(_get_many, keys=rest))
            if not raw or raw is True:
                continue
            for key, blob in raw.items():
                value, expires_ms = self._unwrap(blob)
                if value is not _MISSING and not self.l1.contains(key):
                    self._fill_l1(key, value, expires_ms, prefetched=True)
                    self.counters["prefetch_loaded"] += 1
            rest = [k for k in rest if k not in raw]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued writes, published values and prefetches are done."""
        return self._bg.flush(timeout)

    # --- learning persistence, reset, stats -----------------------------------------

    def load_learning(self) -> int:
        l3 = self.l3
        if l3 is None or not l3.tier.keeps_learning:
            return 0
        rows = l3.call(lambda t: t.load_associations())
        if not rows or rows is True:
            return 0
        self.l1.import_weights(rows)
        return len(rows)

    def save_learning(self) -> int:
        l3 = self.l3
        if l3 is None or not l3.tier.keeps_learning:
            return 0
        rows = self.l1.export_weights()
        saved = l3.call(lambda t: t.save_associations(rows))
        return len(rows) if saved is not None else 0

    def reset(self, *, learning: bool = False, l1: bool = False, l2: bool = False,
              l3: bool = False) -> dict[str, Any]:
        """Reset what is asked; raises TierError when a reachable tier refuses."""
        done: dict[str, Any] = {}
        if learning:
            done["learning_edges"] = self.l1.learning_size()
            self.l1.reset_learning()
            if self.l3 is not None and self.l3.tier.keeps_learning:
                done["learning_rows_deleted"] = self.l3.tier.clear_associations()
        if l1:
            done["l1_entries"] = len(self.l1)
            self.l1.clear()
        if l2 and self.l2 is not None:
            done["l2_keys_deleted"] = self.l2.tier.clear_namespace()
            self.l2.forget_stale()
        if l3 and self.l3 is not None:
            done["l3_entries_deleted"] = self.l3.tier.clear_namespace()
        return done

    def hit_rate(self) -> float | None:
        """Reads served by any tier / reads; None before the first read."""
        gets = self.counters["gets"]
        if not gets:
            return None
        served = self.l1_stats.hits + sum(t.stats.hits for t in (self.l2, self.l3)
                                          if t is not None)
        return served / gets

    def stats(self, *, sizes: bool = False) -> dict[str, Any]:
        tiers: dict[str, Any] = {"l1": {**self.l1_stats.as_dict(), "status": "ok",
                                        "size": len(self.l1), "capacity": self.l1.capacity}}
        for name, tier in (("l2", self.l2), ("l3", self.l3)):
            if tier is None:
                tiers[name] = {"status": "off"}
                continue
            entry = {**tier.stats.as_dict(), "status": tier.status,
                     "breaker": tier.breaker.state, "breaker_trips": tier.breaker.trips,
                     "last_error": tier.last_error}
            if sizes:
                try:
                    entry["size"] = tier.tier.size()
                except TierError as exc:
                    entry["size"] = None
                    entry["last_error"] = str(exc)[:300]
            tiers[name] = entry
        counters = {**self.counters, **self._bg.stats()}
        counters["stale_invalidations"] = (self.l2.stale_invalidations
                                           if self.l2 is not None else 0)
        degraded = any(t is not None and t.status != "ok" for t in (self.l2, self.l3))
        return {"hit_rate": self.hit_rate(), "gets": self.counters["gets"],
                "degraded": degraded, "tiers": tiers, "counters": counters,
                "stale_keys_pending": self.l2.stale_pending if self.l2 is not None else 0,
                "neuromorphic": {**self.l1.stats(), "edges": self.l1.learning_size()}}

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._bg.close(timeout)
        for tier in (self.l2, self.l3):
            if tier is not None:
                tier.tier.close()

    def __enter__(self) -> TieredCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

