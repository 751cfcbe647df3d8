"""Hebbian co-access learning: which keys are read together, and what to prefetch.

When key p is accessed, its outgoing edges weaken by (1 - rate); when key k is then accessed
while p is still in the window, p -> k gains +rate (capped at 1). An edge that follows every
time converges to 1 as w + rate * (1 - w); in general a weight is a moving average of "k
followed p", so keys that merely happen to be nearby now and then never reach the prefetch
threshold. Weights also decay with time, exp(-decay_rate * seconds).

Both are applied lazily. A stored edge value v means v * node.keep_pow * node.decay_ref *
exp(-decay_rate * (now - t0)) now: `keep_pow` is (1 - rate) ** accesses since the node's
last rebase (one multiply per access), `decay_ref` is exp(decay_rate * (rebase time - t0))
and the last factor is computed once per access for all nodes. So an access costs
O(window + fan-out) multiplications and one exp, never O(all edges). Memory is bounded: at
most `max_fanout` edges per source (the weakest goes), `max_sources` sources (the least
recently accessed goes), `max_contexts` windows; edges below `min_weight` are dropped when a
source rebases or overflows.

Windows: the last `window` distinct keys accessed within `window_s` seconds. A string
context, or a mapping's "session" (else "group") entry, names the window, so interleaved
streams (one per symbol, say) do not cross-wire; accesses without a name share one default
window. A mapping's "timestamp" entry, when given, is the access time in the clock's units.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.errors import DataError

DEFAULT_CONTEXT = ""
# Below this factor a source rescales its edges to now, so stored values stay finite.
REBASE_BELOW = 1e-6
# Past this much decay since t0 every node is rebased, so exp(decay * t) stays finite.
GLOBAL_REBASE_DECAY = 300.0


class _Node:
    __slots__ = ("activity", "decay_ref", "edges", "keep_pow", "tick")

    def __init__(self, decay_ref: float) -> None:
        self.activity = 0.0
        self.tick = 0
        self.keep_pow = 1.0
        self.decay_ref = decay_ref
        self.edges: dict[str, float] = {}


class HebbianLearner:
    def __init__(self, *, learning_rate: float, decay_rate: float, window: int,
                 window_s: float, max_fanout: int, prefetch_threshold: float,
                 max_prefetch: int, max_sources: int, max_contexts: int, min_weight: float,
                 aging: float, clock: Callable[[], float]) -> None:
        self.learning_rate = learning_rate
        self.decay_rate = decay_rate
        self.window, self.window_s = window, window_s
        self.max_fanout, self.max_sources, self.max_contexts = max_fanout, max_sources, max_contexts
        self.prefetch_threshold, self.max_prefetch = prefetch_threshold, max_prefetch
        self.min_weight = min_weight
        self.aging = aging
        self._clock = clock
        # rate 1 forgets everything on each access; a tiny keep factor does that via a rebase
        self._keep = max(1.0 - learning_rate, 1e-12)
        self.lock = threading.Lock()
        self.nodes: dict[str, _Node] = {}  # insertion order = recency of access
        self._windows: dict[str, dict[str, float]] = {}  # context -> key -> accessed at
        self.expected: dict[str, int] = {}  # key -> tick it was last predicted at
        self.edge_count = 0
        self.ticks = 0
        self._t0 = clock()
        self._last_window: str | None = None

    # --- public, each under the lock ------------------------------------------------

    def observe(self, key: str, context: Mapping[str, Any] | str | None = None,
                limit: int | None = None) -> list[str]:
        """Learn one access and return the keys to prefetch after it (one lock, one clock)."""
        name, now = self._resolve_context(context)
        with self.lock:
            e_now = self._time_factor(now)
            self._learn(key, name, now, e_now)
            return self._predict(key, e_now, limit)

    def learn(self, key: str, context: Mapping[str, Any] | str | None = None) -> None:
        name, now = self._resolve_context(context)
        with self.lock:
            self._learn(key, name, now, self._time_factor(now))

    def predict(self, key: str, limit: int | None = None) -> list[str]:
        now = self._clock()
        with self.lock:
            return self._predict(key, self._time_factor(now), limit)

    def associations(self, key: str) -> list[tuple[str, float]]:
        now = self._clock()
        with self.lock:
            node = self.nodes.get(key)
            if node is None:
                return []
            e_now = self._time_factor(now)
            self._prune(node, e_now)  # dead edges go when read
            factor = self._factor(node, e_now)
            rows = [(t, min(v * factor, 1.0)) for t, v in node.edges.items()]
        rows.sort(key=lambda row: row[1], reverse=True)
        return rows

    def top(self, n: int) -> list[tuple[str, str, float]]:
        return heapq.nlargest(n, self.export(), key=lambda row: row[2])

    def export(self) -> list[tuple[str, str, float]]:
        now = self._clock()
        with self.lock:
            e_now = self._time_factor(now)
            rows: list[tuple[str, str, float]] = []
            for source, node in self.nodes.items():
                factor = self._factor(node, e_now)
                rows.extend((source, target, min(stored * factor, 1.0))
                            for target, stored in node.edges.items()
                            if stored * factor >= self.min_weight)
        return rows

    def import_rows(self, rows: Iterable[tuple[str, str, float]]) -> None:
        """Load edges (as `export` gives them) as of now; all rows or none."""
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
        with self.lock:
            e_now = self._time_factor(now)
            nodes = self.nodes
            for source, target, weight in checked:
                if source == target or weight < self.min_weight:
                    continue
                node = nodes.get(source)
                if node is None:
                    node = nodes[source] = _Node(1.0 / e_now)
                    if len(nodes) > self.max_sources:
                        self._drop_source(next(iter(nodes)))
                edges = node.edges
                self.edge_count += target not in edges
                edges[target] = weight / self._factor(node, e_now)
                if len(edges) > self.max_fanout:
                    self._prune(node, e_now)

    def reset(self) -> None:
        with self.lock:
            self.nodes.clear()
            self._windows.clear()
            self._last_window = None
            self.expected.clear()
            self.edge_count = 0

    @property
    def contexts(self) -> int:
        return len(self._windows)

    def retention(self, key: str) -> float | None:
        """The key's access rate (halving every 1/aging accesses), or None if never seen.
        Read without the lock by eviction: single dict lookups are atomic."""
        node = self.nodes.get(key)
        if node is None:
            return None
        return node.activity * math.exp((node.tick - self.ticks) * self.aging)

    def recently_predicted(self, key: str) -> bool:
        return self.expected.get(key, -1) >= self.ticks - self.window

    # --- internals (called with the lock held) -----------------------------------------

    def _resolve_context(self, context: Mapping[str, Any] | str | None) -> tuple[str, float]:
        if context is None or isinstance(context, str):
            return context or DEFAULT_CONTEXT, self._clock()
        name = context.get("session", context.get("group"))
        stamp = context.get("timestamp")
        now = self._clock() if stamp is None else float(stamp)
        return (DEFAULT_CONTEXT if name is None else str(name)), now

    def _time_factor(self, now: float) -> float:
        """exp(-decay_rate * (now - t0)), rebasing every node when it grows too small."""
        x = self.decay_rate * (now - self._t0)
        if x > GLOBAL_REBASE_DECAY:
            shift = math.exp(-x)
            for node in self.nodes.values():
                node.decay_ref *= shift
            self._t0 = now
            x = 0.0
        return math.exp(-x) if x > 0.0 else 1.0

    def _factor(self, node: _Node, e_now: float) -> float:
        factor = node.keep_pow * node.decay_ref * e_now
        if factor < REBASE_BELOW:
            floor = self.min_weight
            edges = {t: v * factor for t, v in node.edges.items() if v * factor >= floor}
            self.edge_count -= len(node.edges) - len(edges)
            node.edges, node.keep_pow, node.decay_ref = edges, 1.0, 1.0 / e_now
            return 1.0
        return factor

    def _learn(self, key: str, name: str, now: float, e_now: float) -> None:
        self.ticks += 1
        ticks = self.ticks
        nodes = self.nodes
        node = nodes.pop(key, None)
        if node is None:
            node = _Node(1.0 / e_now)
        nodes[key] = node
        node.activity = node.activity * math.exp((node.tick - ticks) * self.aging) + 1.0
        node.tick = ticks
        node.keep_pow *= self._keep
        if len(nodes) > self.max_sources:
            self._drop_source(next(iter(nodes)))

        windows = self._windows
        if name == self._last_window:
            recent = windows[name]
        else:
            found = windows.pop(name, None)
            if found is None:
                found = {}
                if len(windows) >= self.max_contexts:
                    del windows[next(iter(windows))]
            recent = windows[name] = found
            self._last_window = name
        if recent:
            cutoff = now - self.window_s
            if next(iter(recent.values())) < cutoff:
                for source in [s for s, at in recent.items() if at < cutoff]:
                    del recent[source]
            rate = self.learning_rate
            max_fanout = self.max_fanout
            for source in recent:
                if source == key:
                    continue
                source_node = nodes.get(source)
                if source_node is None:
                    continue
                factor = source_node.keep_pow * source_node.decay_ref * e_now
                if factor < REBASE_BELOW:
                    factor = self._factor(source_node, e_now)
                edges = source_node.edges
                stored = edges.get(key)
                if stored is None:
                    edges[key] = rate / factor
                    self.edge_count += 1
                    if len(edges) > max_fanout:
                        del edges[min(edges, key=edges.__getitem__)]
                        self.edge_count -= 1
                else:
                    weight = stored * factor + rate
                    edges[key] = (1.0 if weight > 1.0 else weight) / factor
            recent.pop(key, None)
        recent[key] = now
        if len(recent) > self.window:
            del recent[next(iter(recent))]

    def _prune(self, node: _Node, e_now: float) -> None:
        """Drop dead edges, then the weakest until the fan-out bound holds."""
        edges = node.edges
        cut = self.min_weight / self._factor(node, e_now)
        dead = [t for t, v in edges.items() if v < cut]
        for target in dead:
            del edges[target]
        while len(edges) > self.max_fanout:
            del edges[min(edges, key=edges.__getitem__)]
            dead.append("")
        self.edge_count -= len(dead)

    def _predict(self, key: str, e_now: float, limit: int | None) -> list[str]:
        limit = self.max_prefetch if limit is None else limit
        node = self.nodes.get(key)
        if node is None or limit <= 0 or not node.edges:
            return []
        edges = node.edges
        cut = self.prefetch_threshold / self._factor(node, e_now)
        ranked = [t for t, v in edges.items() if v >= cut]
        if not ranked:
            return ranked
        if len(ranked) > 1:
            ranked.sort(key=edges.__getitem__, reverse=True)
            del ranked[limit:]
        expected, tick = self.expected, self.ticks
        for target in ranked:
            expected.pop(target, None)
            expected[target] = tick
        while len(expected) > self.max_prefetch * self.window:
            del expected[next(iter(expected))]
        return ranked

    def _drop_source(self, source: str) -> None:
        self.edge_count -= len(self.nodes.pop(source).edges)
