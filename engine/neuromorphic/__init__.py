"""The "neuromorphic" L1: a resident cache that learns which keys are read together
(engine/neuromorphic/learner.py) and evicts by recency, frequency and predicted reuse
(engine/neuromorphic/store.py).

`NeuromorphicCacheManager` is the facade the cache and `supreme cache bench` use. Locks: the
store and the learner each have their own, and no method holds both, so `get` never waits
for learning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine.errors import ConfigError
from engine.neuromorphic.learner import HebbianLearner
from engine.neuromorphic.store import ResidentStore

__all__ = ["NeuromorphicCacheManager"]

# Access counts halve every this many accesses per cache slot: long enough to rank a stable
# popularity (Zipf), short enough that yesterday's hot keys do not squat a shifted workload.
FREQUENCY_HALFLIFE_PER_SLOT = 4


def _check(name: str, value: float, low: float, high: float = math.inf, *,
           integer: bool = False) -> None:
    kind_ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not kind_ok or not (low <= value <= high):
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'} within "
                          f"[{low}, {high}], got {value!r}")


class NeuromorphicCacheManager:
    def __init__(self, capacity: int = 10_000, learning_rate: float = 0.15,
                 decay_rate: float = 0.005, *, window: int = 3, window_s: float = 2.0,
                 max_fanout: int = 8, prefetch_threshold: float = 0.2,
                 max_prefetch: int = 4, max_sources: int = 20_000, max_contexts: int = 256,
                 min_weight: float = 0.01, eviction_sample: int = 4,
                 frequency_halflife: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("capacity", capacity), ("window", window),
                            ("max_fanout", max_fanout), ("max_sources", max_sources),
                            ("max_contexts", max_contexts),
                            ("eviction_sample", eviction_sample)):
            _check(name, value, 1, integer=True)
        _check("max_prefetch", max_prefetch, 0, integer=True)
        if frequency_halflife is not None:
            _check("frequency_halflife", frequency_halflife, 1, integer=True)
        _check("learning_rate", learning_rate, 1e-9, 1.0)
        _check("decay_rate", decay_rate, 0.0, 1e9)
        _check("window_s", window_s, 1e-9, 1e12)
        _check("prefetch_threshold", prefetch_threshold, 0.0, 1.0)
        _check("min_weight", min_weight, 0.0, 1.0)
        self.learning_rate = float(learning_rate)
        self.decay_rate = float(decay_rate)
        self.prefetch_threshold, self.max_prefetch = float(prefetch_threshold), max_prefetch
        aging = math.log(2) / (frequency_halflife or FREQUENCY_HALFLIFE_PER_SLOT * capacity)
        self._learner = learner = HebbianLearner(
            learning_rate=self.learning_rate, decay_rate=self.decay_rate, window=window,
            window_s=float(window_s), max_fanout=max_fanout,
            prefetch_threshold=self.prefetch_threshold, max_prefetch=max_prefetch,
            max_sources=max_sources, max_contexts=max_contexts, min_weight=float(min_weight),
            aging=aging, clock=clock)
        self._store = store = ResidentStore(capacity, learner, eviction_sample, clock)
        # Bound methods of the parts: the L1 hit path pays no extra call.
        self.get: Callable[..., Any] = store.get
        self.contains: Callable[[str], bool] = store.contains
        self.put: Callable[..., None] = store.put
        self.delete: Callable[[str], bool] = store.delete
        self.clear: Callable[[], None] = store.clear
        self.observe: Callable[..., list[str]] = learner.observe
        self.learn_access_pattern: Callable[..., None] = learner.learn
        self.predict_prefetch_candidates: Callable[..., list[str]] = learner.predict
        self.associations: Callable[[str], list[tuple[str, float]]] = learner.associations

    # --- learning -----------------------------------------------------------------------

    def top_associations(self, n: int = 10) -> list[tuple[str, str, float]]:
        """The `n` strongest edges overall, O(edges): for statistics, not hot paths."""
        return self._learner.top(n)

    def export_weights(self) -> list[tuple[str, str, float]]:
        """Every live edge as (source, target, weight decayed to now)."""
        return self._learner.export()

    def import_weights(self, rows: Iterable[tuple[str, str, float]]) -> None:
        self._learner.import_rows(rows)

    def reset_learning(self) -> None:
        self._learner.reset()

    def learning_size(self) -> int:
        """Learned edges, counting decayed ones not yet dropped (bounded all the same)."""
        return self._learner.edge_count

    # --- store ----------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._store.capacity

    def __len__(self) -> int:
        return len(self._store)

    @property
    def hits(self) -> int:
        return self._store.hits

    @property
    def misses(self) -> int:
        return self._store.misses

    @property
    def evictions(self) -> int:
        return self._store.evictions

    @property
    def prefetched(self) -> int:
        return self._store.prefetched

    @property
    def prefetch_hits(self) -> int:
        return self._store.prefetch_hits

    @property
    def prefetch_wasted(self) -> int:
        return self._store.prefetch_wasted

    def stats(self) -> dict[str, Any]:
        s = self._store
        looked = s.hits + s.misses
        return {"size": len(s), "capacity": s.capacity, "hits": s.hits, "misses": s.misses,
                "hit_rate": s.hits / looked if looked else None, "evictions": s.evictions,
                "prefetched": s.prefetched, "prefetch_hits": s.prefetch_hits,
                "prefetch_wasted": s.prefetch_wasted, "edges": self._learner.edge_count,
                "sources": len(self._learner.nodes), "contexts": self._learner.contexts}

