"""The resident L1 store: values in two segments, with eviction that asks the learner.

`put` admits into a probation segment; the first read moves an entry to the main segment.
Eviction looks at the oldest `eviction_sample` entries of each segment (recency) and drops
the lowest retention score: expired entries first, then prefetched entries nobody read,
then by frequency (the learner's decaying access rate; for keys never learned, whether they
were read), except that keys the learner predicted within its last `window` accesses
(predicted reuse) go last. New one-hit keys (a scan) therefore evict each other rather than
the frequently read ones.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from itertools import islice
from typing import Any

from engine.neuromorphic.learner import HebbianLearner

# No access rate comes near this bonus: a key about to be read is evicted only when every
# sampled entry is such a key.
PREDICTED_BONUS = 1e9
UNUSED_PREFETCH_SCORE = -1.0


class _Entry:
    __slots__ = ("expires_at", "hits", "prefetched", "value")

    def __init__(self, value: Any, expires_at: float | None, prefetched: bool) -> None:
        self.value = value
        self.expires_at = expires_at
        self.hits = 0
        self.prefetched = prefetched  # admitted by prefetch and not read yet


class ResidentStore:
    def __init__(self, capacity: int, learner: HebbianLearner, eviction_sample: int,
                 clock: Callable[[], float]) -> None:
        self.capacity = capacity
        self._learner = learner
        self._sample = eviction_sample
        self._clock = clock
        self._lock = threading.Lock()
        self._probation: OrderedDict[str, _Entry] = OrderedDict()
        self._main: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = self.misses = self.evictions = 0
        self.prefetched = self.prefetch_hits = self.prefetch_wasted = 0

    def __len__(self) -> int:
        return len(self._probation) + len(self._main)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            entry = self._main.get(key)
            if entry is not None:
                if entry.expires_at is not None and entry.expires_at <= self._clock():
                    del self._main[key]
                    self.misses += 1
                    return default
                self._main.move_to_end(key)
            else:
                entry = self._probation.get(key)
                if entry is None or (entry.expires_at is not None
                                     and entry.expires_at <= self._clock()):
                    if entry is not None:
                        self._discard(self._probation, key, entry)
                    self.misses += 1
                    return default
                del self._probation[key]
                self._main[key] = entry
                if entry.prefetched:
                    entry.prefetched = False
                    self.prefetch_hits += 1
            entry.hits += 1
            self.hits += 1
            return entry.value

    def contains(self, key: str) -> bool:
        """Resident and not expired; not counted as a read."""
        with self._lock:
            segment = self._main if key in self._main else self._probation
            entry = segment.get(key)
            if entry is None:
                return False
            if entry.expires_at is not None and entry.expires_at <= self._clock():
                self._discard(segment, key, entry)
                return False
            return True

    def put(self, key: str, value: Any, *, prefetched: bool = False,
            expires_at: float | None = None) -> None:
        with self._lock:
            segment = self._main if key in self._main else self._probation
            entry = segment.get(key)
            if entry is not None:
                entry.value, entry.expires_at = value, expires_at
                segment.move_to_end(key)
                return
            while len(self._probation) + len(self._main) >= self.capacity:
                self._evict_one()
            self._probation[key] = _Entry(value, expires_at, prefetched)
            self.prefetched += prefetched

    def delete(self, key: str) -> bool:
        with self._lock:
            segment = self._main if key in self._main else self._probation
            entry = segment.get(key)
            if entry is not None:
                self._discard(segment, key, entry)
            return entry is not None

    def clear(self) -> None:
        with self._lock:
            self.prefetch_wasted += sum(entry.prefetched for entry in self._probation.values())
            self._probation.clear()
            self._main.clear()

    def _discard(self, segment: OrderedDict[str, _Entry], key: str, entry: _Entry) -> None:
        del segment[key]
        self.prefetch_wasted += entry.prefetched

    def _evict_one(self) -> None:
        """Drop the sampled entry least worth keeping (see the module docstring)."""
        now = self._clock()
        learner = self._learner
        victim: tuple[float, OrderedDict[str, _Entry], str] | None = None
        for segment in (self._probation, self._main):
            for key in islice(segment, self._sample):
                entry = segment[key]
                if entry.expires_at is not None and entry.expires_at <= now:
                    score = -math.inf
                elif entry.prefetched:
                    score = UNUSED_PREFETCH_SCORE
                else:
                    rate = learner.retention(key)
                    score = (1.0 if entry.hits else 0.0) if rate is None else rate
                if learner.recently_predicted(key):
                    score += PREDICTED_BONUS
                if victim is None or score < victim[0]:
                    victim = (score, segment, key)
        if victim is not None:
            _, segment, key = victim
            self._discard(segment, key, segment[key])
            self.evictions += 1
