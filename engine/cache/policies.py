"""Cache policies the bench replays a trace through, behind one interface.

A policy sees each access once (`access(key)` returns whether it hit) and counts hits,
misses and prefetches; a miss loads the value and admits it. Only the neuromorphic policy
prefetches: after each access it learns the access, asks for candidates above its threshold
and admits those not resident, each counted as a load and a prefetch.

The neuromorphic manager runs on a virtual clock advancing `tick_s` per access, so a replay
is deterministic and its decay and time windows mean the same whatever the machine speed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from cachetools import Cache, LFUCache, LRUCache

from engine.errors import ConfigError
from engine.neuromorphic import NeuromorphicCacheManager

DEFAULT_TICK_S = 0.001
_MISSING = object()


class ReplayPolicy(ABC):
    name: str = "policy"

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self.prefetches = 0

    @abstractmethod
    def access(self, key: str) -> bool:
        """Read `key`; True on a hit. A miss loads and admits the key."""

    @property
    def prefetch_hits(self) -> int:
        return 0

    @property
    def prefetch_wasted(self) -> int:
        return 0

    def counters(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses,
                "loads": self.misses + self.prefetches, "prefetches": self.prefetches,
                "prefetch_hits": self.prefetch_hits, "wasted_prefetches": self.prefetch_wasted}


class _CachetoolsPolicy(ReplayPolicy):
    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.cache = self._make_cache(capacity)

    @staticmethod
    @abstractmethod
    def _make_cache(capacity: int) -> Cache[str, bool]: ...

    def access(self, key: str) -> bool:
        cache = self.cache
        if key in cache:
            cache[key]  # the read is what updates the policy's recency or frequency
            self.hits += 1
            return True
        self.misses += 1
        cache[key] = True
        return False


class LRUPolicy(_CachetoolsPolicy):
    name = "lru"

    @staticmethod
    def _make_cache(capacity: int) -> Cache[str, bool]:
        return LRUCache(maxsize=capacity)


class LFUPolicy(_CachetoolsPolicy):
    name = "lfu"

    @staticmethod
    def _make_cache(capacity: int) -> Cache[str, bool]:
        return LFUCache(maxsize=capacity)


class NeuromorphicPolicy(ReplayPolicy):
    name = "neuromorphic"

    def __init__(self, capacity: int, *, tick_s: float = DEFAULT_TICK_S,
                 **manager_options: Any) -> None:
        super().__init__(capacity)
        self._now = 0.0
        self._tick_s = tick_s
        self.manager = NeuromorphicCacheManager(capacity, clock=self._clock, **manager_options)

    def _clock(self) -> float:
        return self._now

    def access(self, key: str) -> bool:
        self._now += self._tick_s
        manager = self.manager
        hit = manager.get(key, _MISSING) is not _MISSING
        if hit:
            self.hits += 1
        else:
            self.misses += 1
            manager.put(key, True)
        for candidate in manager.observe(key):
            if not manager.contains(candidate):
                manager.put(candidate, True, prefetched=True)
                self.prefetches += 1
        return hit

    @property
    def prefetch_hits(self) -> int:
        return self.manager.prefetch_hits

    @property
    def prefetch_wasted(self) -> int:
        return self.manager.prefetch_wasted


POLICIES: tuple[type[ReplayPolicy], ...] = (LRUPolicy, LFUPolicy, NeuromorphicPolicy)
