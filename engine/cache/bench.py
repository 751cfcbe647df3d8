"""Replay one key trace through LRU, LFU and the neuromorphic cache at the same capacity.

Every figure is measured in the run that reports it. Per policy:
- hit_rate = hits / accesses (a prefetched key read later is a hit);
- loads = misses + prefetches (every prefetch fetches a value);
- prefetch_precision = prefetch_hits / prefetches: how many prefetches were read;
- prefetch_recall = prefetch_hits / (prefetch_hits + misses): of the reads that would have
  missed without prefetching, the share a prefetch served;
- ns_per_access: wall time of the replay divided by the accesses, this machine, this run.
Precision and recall are None when their denominator is zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.cache.policies import POLICIES, ReplayPolicy
from engine.errors import ConfigError

Progress = Callable[[str, int, int], None]
PROGRESS_EVERY = 10_000
ENGINE_HIT_RATE_TARGET = 0.95
COOCCUR_MARGIN = 0.05
SCAN_TOLERANCE = 0.01


def default_capacity(distinct_keys: int) -> int:
    return max(1, distinct_keys // 10)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def replay(policy: ReplayPolicy, keys: Sequence[str],
           progress: Progress | None = None) -> dict[str, Any]:
    total = len(keys)
    access = policy.access
    started = time.perf_counter_ns()
    if progress is None:
        for key in keys:
            access(key)
    else:
        for start in range(0, total, PROGRESS_EVERY):
            for key in keys[start:start + PROGRESS_EVERY]:
                access(key)
            progress(policy.name, min(start + PROGRESS_EVERY, total), total)
    elapsed_ns = time.perf_counter_ns() - started
    counts = policy.counters()
    return {"hit_rate": counts["hits"] / total if total else 0.0, **counts,
            "prefetch_precision": _ratio(counts["prefetch_hits"], counts["prefetches"]),
            "prefetch_recall": _ratio(counts["prefetch_hits"],
                                      counts["prefetch_hits"] + counts["misses"]),
            "ns_per_access": elapsed_ns / total if total else 0.0,
            "wall_s": elapsed_ns / 1e9}


def _goal(goal: str, target: float, measured: float) -> dict[str, Any]:
    return {"goal": goal, "target": target, "measured": measured, "met": measured >= target}


def goals(trace_name: str, policies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    neuro = policies["neuromorphic"]["hit_rate"]
    lru = policies["lru"]["hit_rate"]
    if trace_name == "engine":
        return [_goal("neuromorphic hit rate >= 95% on the engine trace",
                      ENGINE_HIT_RATE_TARGET, neuro)]
    if trace_name == "cooccur":
        return [_goal("neuromorphic hit rate >= LRU + 5 points on the co-access trace",
                      lru + COOCCUR_MARGIN, neuro)]
    if trace_name == "scan":
        return [_goal("neuromorphic hit rate no more than 1 point below LRU on the scan trace",
                      lru - SCAN_TOLERANCE, neuro)]
    return []


def run_bench(keys: Sequence[str], *, trace_name: str, capacity: int | None = None,
              seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Replay `keys` through every policy; a JSON-able report with goals as data.

    `seed` is the one the trace was generated with; the replay itself is deterministic.
    """
    if not keys:
        raise ConfigError("the trace holds no keys")
    distinct = len(set(keys))
    if capacity is None:
        capacity = default_capacity(distinct)
    if capacity < 1:
        raise ConfigError(f"cache capacity must be >= 1, got {capacity}")
    results = {policy.name: replay(policy(capacity), keys, progress) for policy in POLICIES}
    return {"trace": trace_name, "capacity": capacity, "accesses": len(keys),
            "distinct_keys": distinct, "seed": seed, "policies": results,
            "goals": goals(trace_name, results)}
