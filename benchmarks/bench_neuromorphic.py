"""Benchmark the neuromorphic L1: what learning costs per access, and what a hit costs.

    python benchmarks/bench_neuromorphic.py [--accesses 100000] [--repeats 5] [--json out.json]

learn_predict_us: `learn_access_pattern` + `predict_prefetch_candidates` for every access of
the seeded co-access trace (engine.cache.traces.cooccur), default settings, on a virtual
clock advancing 1 ms per access; untimed loop, median over repeats.
get_hit: `get` of a resident key in a full cache (capacity 10,000), each call timed with
perf_counter_ns; the median cost of an empty timer pair is subtracted and reported.
get_hit_with_writer: the same while another thread `put`s (the background prefetcher's
pattern); under the GIL this includes lock hand-offs, so it is shown, not targeted.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.cache.traces import cooccur  # noqa: E402
from engine.neuromorphic import NeuromorphicCacheManager  # noqa: E402

CAPACITY = 10_000
GET_HIT_P50_TARGET_US = 0.5


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def timer_overhead_ns() -> float:
    ns = time.perf_counter_ns
    samples = []
    for _ in range(200_000):
        t0 = ns()
        samples.append(ns() - t0)
    return statistics.median(samples)


def learn_predict_us(keys: list[str], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        clock = VirtualClock()
        manager = NeuromorphicCacheManager(CAPACITY, clock=clock)
        learn, predict = manager.learn_access_pattern, manager.predict_prefetch_candidates
        t0 = time.perf_counter()
        for key in keys:
            clock.now += 0.001
            learn(key)
            predict(key)
        samples.append((time.perf_counter() - t0) / len(keys) * 1e6)
    return statistics.median(samples)


def full_cache() -> tuple[NeuromorphicCacheManager, list[str]]:
    manager = NeuromorphicCacheManager(CAPACITY)
    keys = [f"G{n}-price" for n in range(CAPACITY)]
    for key in keys:
        manager.put(key, 1.0)
    return manager, keys


def get_hit_percentiles(reads: int, overhead: float, *, writer: bool) -> dict[str, float]:
    manager, keys = full_cache()
    order = random.Random(0).choices(keys, k=reads)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            manager.put(keys[n % CAPACITY], float(n))
            n += 1

    thread = threading.Thread(target=write, daemon=True) if writer else None
    if thread is not None:
        thread.start()
    get, ns, samples = manager.get, time.perf_counter_ns, []
    try:
        for key in order:
            t0 = ns()
            get(key)
            samples.append(ns() - t0)
    finally:
        stop.set()
        if thread is not None:
            thread.join()
    samples.sort()
    n = len(samples)
    return {"p50": max(samples[n // 2] - overhead, 0) / 1000,
            "p99": max(samples[int(n * 0.99)] - overhead, 0) / 1000,
            "reads": reads}


def run(accesses: int, repeats: int) -> dict[str, Any]:
    keys = cooccur(seed=0, accesses=accesses)
    overhead = timer_overhead_ns()
    res: dict[str, Any] = {
        "accesses": accesses, "repeats": repeats, "capacity": CAPACITY,
        "timer_overhead_ns": overhead,
        "learn_predict_us": learn_predict_us(keys, repeats),
        "get_hit_us": get_hit_percentiles(accesses, overhead, writer=False),
        "get_hit_with_writer_us": get_hit_percentiles(accesses, overhead, writer=True),
    }
    res["targets"] = {f"get hit p50 <= {GET_HIT_P50_TARGET_US} us":
                      res["get_hit_us"]["p50"] <= GET_HIT_P50_TARGET_US}
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description="neuromorphic L1 benchmark")
    parser.add_argument("--accesses", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.accesses, args.repeats = 20_000, 3
    res = run(args.accesses, args.repeats)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
