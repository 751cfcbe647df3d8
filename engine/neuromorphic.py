"""A resident L1 cache that learns which keys are read together and prefetches them.

Learning ("fire together, wire together"): when key p is accessed, its outgoing edges weaken
by (1 - rate); when key k is then accessed while p is still in the window, p -> k gains
+rate (capped at 1). An edge that follows every time converges to 1 as w + rate * (1 - w);
in general a weight is a moving average of "k followed p", so keys that merely happen to be
nearby now and then never reach the prefetch threshold. Weights also decay with time,
exp(-decay_rate * seconds). Both are applied lazily, through one factor per source (see
_Node), so an access costs O(window + fan-out), never O(all edges). Memory is bounded: at
most `max_fanout` edges per source (the weakest goes), `max_sources` sources (the least
recently accessed goes), `max_contexts` windows; an edge below `min_weight` is dropped when
next read.

Windows: the last `window` distinct keys accessed within `window_s` seconds. A string
context, or a mapping's "session" (else "group") entry, names the window, so callers keep
interleaved streams (one per symbol, say) from cross-wiring; accesses without a name share
one default window. A mapping's "timestamp" entry, when given, is the access time in the
clock's units; otherwise `clock()` is.

Store: `put` admits into a probation segment; the first read moves an entry to the main
segment. Eviction looks at the oldest `eviction_sample` entries of each segment (recency)
and drops the lowest retention score: expired entries first, then prefetched entries nobody
read, then by frequency (the learner's access count, halved every `frequency_halflife`
accesses; for keys never learned, whether they were read), except that keys the learner
predicted within the last `window` accesses (predicted reuse) go last. New one-hit keys (a
scan) therefore evict each other rather than the frequently read ones.

Locks: one guards the store, one the learner, and no method holds both, so `get` never waits
for learning. Eviction reads the learner's dicts without its lock: single dict lookups are
atomic, and a stale frequency only nudges a heuristic.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

from engine.errors import ConfigError, DataError

DEFAULT_CONTEXT = ""
# A key predicted within the last `window` accesses is about to be read: eviction takes it
# only when every sampled entry is such a key (no access rate comes near this bonus).
PREDICTED_BONUS = 1e9
UNUSED_PREFETCH_SCORE = -1.0
# Below this decay factor a source rescales its edges to now, so stored values stay finite.
REBASE_BELOW = 1e-6
# Access counts halve every this many accesses per cache slot: long enough to rank a stable
# popularity (Zipf), short enough that yesterday's hot keys do not squat a shifted workload.
FREQUENCY_HALFLIFE_PER_SLOT = 4


class _Entry:
    __slots__ = ("expires_at", "hits", "prefetched", "value")

    def __init__(self, value: Any, expires_at: float | None, prefetched: bool) -> None:
        self.value = value
        self.expires_at = expires_at
        self.hits = 0
        self.prefetched = prefetched  # admitted by prefetch and not read yet


class _Node:
    """A source key: how often it is accessed, and its outgoing edges.

    `activity` counts accesses, halved every `frequency_halflife` accesses (of any key), as of
    access number `tick`. Edge values are stored relative to a reference: a stored v means
    v * (1 - learning_rate) ** fired * exp(-decay_rate * (now - since)) now, where `fired`
    counts this key's accesses since `since`. One factor thus applies every depression and
    decay to all edges of the source at once, and ranking them needs no arithmetic.
    """

    __slots__ = ("activity", "edges", "fired", "since", "tick")

    def __init__(self, now: float) -> None:
        self.activity = 0.0
        self.tick = 0
        self.fired = 0
        self.since = now
        self.edges: dict[str, float] = {}


def _check(name: str, value: float, low: float, high: float = math.inf, *,
           integer: bool = False) -> None:
    kind_ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not kind_ok or not (low <= value <= high):
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'} within "
                          f"[{low}, {high}], got {value!r}")


class NeuromorphicCacheManager:
    def __init__(self, capacity: int = 10_000, learning_rate: float = 0.15,
                 decay_rate: float = 0.005, *, window: int = 4, window_s: float = 2.0,
                 max_fanout: int = 16, prefetch_threshold: float = 0.2,
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
        self._capacity = capacity
        self.learning_rate = float(learning_rate)
        self.decay_rate = float(decay_rate)
        self.window, self.window_s = window, float(window_s)
        self.max_fanout, self.max_sources, self.max_contexts = max_fanout, max_sources, max_contexts
        self.prefetch_threshold, self.max_prefetch = float(prefetch_threshold), max_prefetch
        self.min_weight, self.eviction_sample = float(min_weight), eviction_sample
        self._clock = clock
        # rate 1 forgets everything on each access; a tiny keep factor does that via a rebase
        self._log_keep = math.log(max(1.0 - self.learning_rate, 1e-12))
        self._aging = math.log(2) / (frequency_halflife or FREQUENCY_HALFLIFE_PER_SLOT * capacity)

        self._store_lock = threading.Lock()
        self._probation: OrderedDict[str, _Entry] = OrderedDict()
        self._main: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = self.misses = self.evictions = 0
        self.prefetched = self.prefetch_hits = self.prefetch_wasted = 0

        self._learn_lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}  # insertion order = recency of access
        self._windows: dict[str, dict[str, float]] = {}  # context -> key -> accessed at
        self._expected: dict[str, int] = {}  # key -> tick it was last predicted at
        self._edge_count = 0
        self._ticks = 0

    # ---- learning -------------------------------------------------------------------------

    def learn_access_pattern(self, key: str,
                             context: Mapping[str, Any] | str | None = None) -> None:
        name, now = self._resolve_context(context)
        rate = self.learning_rate
        with self._learn_lock:
            self._ticks += 1
            nodes = self._nodes
            node = nodes.pop(key, None) or _Node(now)
            nodes[key] = node
            node.activity = node.activity * math.exp((node.tick - self._ticks) * self._aging) + 1
            node.tick = self._ticks
            node.fired += 1
            if len(nodes) > self.max_sources:
                self._drop_source(next(iter(nodes)))

            recent = self._windows.pop(name, None)
            if recent is None:
                recent = {}
                if len(self._windows) >= self.max_contexts:
                    del self._windows[next(iter(self._windows))]
            self._windows[name] = recent
            cutoff = now - self.window_s
            if recent and next(iter(recent.values())) < cutoff:
                for source in [source for source, at in recent.items() if at < cutoff]:
                    del recent[source]
            decay, log_keep = self.decay_rate, self._log_keep
            for source in recent:
                source_node = nodes.get(source)
                if source_node is None or source == key:
                    continue
                elapsed = now - source_node.since
                factor = math.exp(source_node.fired * log_keep
                                  - (decay * elapsed if elapsed > 0.0 else 0.0))
                if factor < REBASE_BELOW:
                    factor = self._rebase(source_node, factor, now)
                edges = source_node.edges
                stored = edges.get(key)
                weight = 0.0 if stored is None else stored * factor
                edges[key] = min(weight + rate, 1.0) / factor
                if stored is None:
                    self._edge_count += 1
                    if len(edges) > self.max_fanout:
                        del edges[min(edges, key=edges.__getitem__)]
                        self._edge_count -= 1
            recent.pop(key, None)
            recent[key] = now
            if len(recent) > self.window:
                del recent[next(iter(recent))]

    def predict_prefetch_candidates(self, key: str, limit: int | None = None) -> list[str]:
        """Keys most strongly associated from `key`, above `prefetch_threshold`."""
        limit = self.max_prefetch if limit is None else limit
        if limit <= 0:
            return []
        now = self._clock()
        with self._learn_lock:
            ranked = self._ranked_targets(key, now, self.prefetch_threshold)[:limit]
            expected, tick = self._expected, self._ticks
            for target in ranked:
                expected.pop(target, None)
                expected[target] = tick
            while len(expected) > self.max_prefetch * self.window:
                del expected[next(iter(expected))]
        return ranked

    def associations(self, key: str) -> list[tuple[str, float]]:
        """Every live edge out of `key`, strongest first."""
        now = self._clock()
        with self._learn_lock:
            ranked = self._ranked_targets(key, now, self.min_weight)
            if not ranked:
                return []
            node = self._nodes[key]
            factor = self._scale(node, now)
            return [(target, min(node.edges[target] * factor, 1.0)) for target in ranked]

    def top_associations(self, n: int = 10) -> list[tuple[str, str, float]]:
        """The `n` strongest edges overall, O(edges): meant for statistics, not hot paths."""
        return heapq.nlargest(n, self.export_weights(), key=lambda row: row[2])

    def export_weights(self) -> list[tuple[str, str, float]]:
        """Every live edge as (source, target, weight decayed to now)."""
        now = self._clock()
        with self._learn_lock:
            rows: list[tuple[str, str, float]] = []
            for source, node in self._nodes.items():
                factor = self._scale(node, now)
                rows.extend((source, target, min(stored * factor, 1.0))
                            for target, stored in node.edges.items()
                            if stored * factor >= self.min_weight)
        return rows

    def import_weights(self, rows: Iterable[tuple[str, str, float]]) -> None:
        """Load edges (as `export_weights` gives them) as of now; all rows or none."""
        checked: list[tuple[str, str, float]] = []
        for row in rows:
            try:
                source, target, weight = row
                weight = float(weight)
            except (TypeError, ValueError) as exc:
                raise DataError(f"association row {row!r} is not (source, target, weight)") \
                    from exc
            if not (isinstance(source, str) and isinstance(target, str) and source and target):
                raise DataError(f"association row {row!r} needs non-empty string keys")
            if not 0.0 <= weight <= 1.0:
                raise DataError(f"association weight {weight!r} is outside [0, 1]")
            checked.append((source, target, weight))
        now = self._clock()
        with self._learn_lock:
            nodes = self._nodes
            for source, target, weight in checked:
                if source == target or weight < self.min_weight:
                    continue
                node = nodes.get(source)
                if node is None:
                    node = nodes[source] = _Node(now)
                    if len(nodes) > self.max_sources:
                        self._drop_source(next(iter(nodes)))
                edges = node.edges
                self._edge_count += target not in edges
                edges[target] = weight / self._scale(node, now)
                if len(edges) > self.max_fanout:
                    del edges[min(edges, key=edges.__getitem__)]
                    self._edge_count -= 1

    def reset_learning(self) -> None:
        with self._learn_lock:
            self._nodes.clear()
            self._windows.clear()
            self._expected.clear()
            self._edge_count = 0

    def learning_size(self) -> int:
        """Learned edges, counting decayed ones not yet dropped (bounded all the same)."""
        return self._edge_count

    # ---- store ----------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._probation) + len(self._main)

    def get(self, key: str, default: Any = None) -> Any:
        with self._store_lock:
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
        with self._store_lock:
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
        """Store a value; `expires_at` is a `clock()` value from which it reads as a miss."""
        with self._store_lock:
            segment = self._main if key in self._main else self._probation
            entry = segment.get(key)
            if entry is not None:
                entry.value, entry.expires_at = value, expires_at
                segment.move_to_end(key)
                return
            while len(self._probation) + len(self._main) >= self._capacity:
                self._evict_one()
            self._probation[key] = _Entry(value, expires_at, prefetched)
            self.prefetched += prefetched

    def delete(self, key: str) -> bool:
        with self._store_lock:
            segment = self._main if key in self._main else self._probation
            entry = segment.get(key)
            if entry is not None:
                self._discard(segment, key, entry)
            return entry is not None

    def clear(self) -> None:
        with self._store_lock:
            self.prefetch_wasted += sum(entry.prefetched for entry in self._probation.values())
            self._probation.clear()
            self._main.clear()

    def stats(self) -> dict[str, Any]:
        looked = self.hits + self.misses
        return {"size": len(self), "capacity": self._capacity, "hits": self.hits,
                "misses": self.misses, "hit_rate": self.hits / looked if looked else None,
                "evictions": self.evictions, "prefetched": self.prefetched,
                "prefetch_hits": self.prefetch_hits, "prefetch_wasted": self.prefetch_wasted,
                "edges": self._edge_count, "sources": len(self._nodes),
                "contexts": len(self._windows)}

    # ---- internals ------------------------------------------------------------------------

    def _resolve_context(self, context: Mapping[str, Any] | str | None) -> tuple[str, float]:
        if context is None or isinstance(context, str):
            return context or DEFAULT_CONTEXT, self._clock()
        name = context.get("session", context.get("group"))
        stamp = context.get("timestamp")
        now = self._clock() if stamp is None else float(stamp)
        return (DEFAULT_CONTEXT if name is None else str(name)), now

    def _scale(self, node: _Node, now: float) -> float:
        """What the node's stored edge values are multiplied by now; rebases when tiny."""
        elapsed = now - node.since
        factor = math.exp(node.fired * self._log_keep
                          - (self.decay_rate * elapsed if elapsed > 0.0 else 0.0))
        return factor if factor >= REBASE_BELOW else self._rebase(node, factor, now)

    def _rebase(self, node: _Node, factor: float, now: float) -> float:
        floor = self.min_weight
        edges = {target: stored * factor for target, stored in node.edges.items()
                 if stored * factor >= floor}
        self._edge_count -= len(node.edges) - len(edges)
        node.edges, node.fired, node.since = edges, 0, now
        return 1.0

    def _ranked_targets(self, key: str, now: float, floor: float) -> list[str]:
        """Targets of `key` whose decayed weight is at least `floor`, strongest first."""
        node = self._nodes.get(key)
        if node is None:
            return []
        factor = self._scale(node, now)
        edges = node.edges
        if edges and min(edges.values()) * factor < self.min_weight:
            dead = [target for target, stored in edges.items()
                    if stored * factor < self.min_weight]
            for target in dead:
                del edges[target]
            self._edge_count -= len(dead)
        cut = floor / factor
        live = [target for target, stored in edges.items() if stored >= cut]
        live.sort(key=edges.__getitem__, reverse=True)
        return live

    def _drop_source(self, source: str) -> None:
        self._edge_count -= len(self._nodes.pop(source).edges)

    def _discard(self, segment: OrderedDict[str, _Entry], key: str, entry: _Entry) -> None:
        del segment[key]
        self.prefetch_wasted += entry.prefetched

    def _evict_one(self) -> None:
        """Drop the sampled entry least worth keeping (see the module docstring)."""
        now = self._clock()
        nodes, expected, ticks, aging = self._nodes, self._expected, self._ticks, self._aging
        oldest_fresh = self._ticks - self.window
        victim: tuple[float, OrderedDict[str, _Entry], str] | None = None
        for segment in (self._probation, self._main):
            for key in islice(segment, self.eviction_sample):
                entry = segment[key]
                if entry.expires_at is not None and entry.expires_at <= now:
                    score = -math.inf
                elif entry.prefetched:
                    score = UNUSED_PREFETCH_SCORE
                else:
                    score = 1.0 if entry.hits else 0.0
                    node = nodes.get(key)
                    if node is not None:
                        score = node.activity * math.exp((node.tick - ticks) * aging)
                if expected.get(key, oldest_fresh - 1) >= oldest_fresh:
                    score += PREDICTED_BONUS
                if victim is None or score < victim[0]:
                    victim = (score, segment, key)
        if victim is not None:
            _, segment, key = victim
            self._discard(segment, key, segment[key])
            self.evictions += 1
