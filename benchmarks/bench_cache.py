"""Benchmark the cache tiers against the libraries a user would otherwise call directly.

    python benchmarks/bench_cache.py [--quick] [--json out.json]

Per-get p50 of: L1 (the neuromorphic manager's get, and TieredCache.get on an L1 hit);
L2 RedisTier.get against a raw redis-py GET, interleaved in one run on the shared Redis;
L3 on SQLite and on loopback PostgreSQL against a raw sqlite3 / psycopg SELECT; learning
plus prediction per access; and `supreme cache bench`'s hit rates on its three traces.
Every call is timed with perf_counter_ns; the median cost of an empty timer pair is
subtracted and reported. Redis keys live under supreme:bench<pid>: and are deleted after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SUPREME_SHARED_DATA", REPO.parent / "shared" / "data"))
REDIS_URL = os.environ.get("SUPREME_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("SUPREME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

from engine.cache import CacheSettings, TieredCache  # noqa: E402
from engine.cache.base import encode  # noqa: E402
from engine.neuromorphic import NeuromorphicCacheManager  # noqa: E402

perf = time.perf_counter_ns


def timer_overhead_ns() -> float:
    samples = []
    for _ in range(20_000):
        t0 = perf()
        samples.append(perf() - t0)
    return statistics.median(samples)


def p50_us(fn: Callable[[], Any], n: int, overhead: float) -> float:
    samples = []
    for _ in range(n):
        t0 = perf()
        fn()
        samples.append(perf() - t0)
    return max(0.0, statistics.median(samples) - overhead) / 1000


def interleaved(fns: dict[str, Callable[[], Any]], n: int, overhead: float
                ) -> dict[str, float]:
    """p50 µs of each function, called in turn so machine noise hits all alike."""
    samples: dict[str, list[int]] = {k: [] for k in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t0 = perf()
            fn()
            samples[name].append(perf() - t0)
    return {k: max(0.0, statistics.median(v) - overhead) / 1000 for k, v in samples.items()}


def bench_l1(n: int, overhead: float) -> dict[str, Any]:
    manager = NeuromorphicCacheManager(capacity=10_000)
    for i in range(5_000):
        manager.put(f"k{i}", i)
    cache = TieredCache(CacheSettings(env="bench", prefetch=False))
    cache.set("ticker:ETH-USDT", [1, 2.0, 3.0], durable=False)
    learning = TieredCache(CacheSettings(env="bench"))
    learning.set("ticker:ETH-USDT", [1, 2.0, 3.0], durable=False)
    d: dict[str, int] = {f"k{i}": i for i in range(5_000)}
    res = interleaved({"dict_get": lambda: d.get("k42"),
                       "manager_get": lambda: manager.get("k42"),
                       "tiered_get": lambda: cache.get("ticker:ETH-USDT"),
                       "tiered_get_learning": lambda: learning.get("ticker:ETH-USDT")},
                      n, overhead)
    cache.close()
    learning.close()
    return res


def bench_learning(quick: bool) -> dict[str, Any]:
    from engine.cache.traces import cooccur

    keys = list(cooccur(0))[: 50_000 if quick else 200_000]
    manager = NeuromorphicCacheManager(capacity=800)
    observe = manager.observe  # learning plus prediction, one lock and one clock read
    t0 = perf()
    for key in keys:
        observe(key)
    per = (perf() - t0) / len(keys) / 1000
    return {"accesses": len(keys), "learn_and_predict_us": per,
            "edges": manager.learning_size()}


def bench_l2(n: int, overhead: float) -> dict[str, Any]:
    import redis

    from engine.cache.redis_tier import RedisTier

    env = f"bench{os.getpid()}"
    raw = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        raw.ping()
    except Exception as exc:
        return {"skipped": f"Redis at {REDIS_URL} not reachable: {exc}"}
    tier = RedisTier(REDIS_URL, env)
    blob = encode([None, [1700000000000, 2500.5, 2501.0, 2499.0, 2500.0, 12.5]])
    keys = [f"k{i}" for i in range(10)]
    tier.set_many({k: blob for k in keys})
    raw_keys = [f"supreme:{env}:{k}" for k in keys]
    try:
        single = interleaved({"raw_get": lambda: raw.get(raw_keys[0]),
                              "tier_get": lambda: tier.get("k0")}, n, overhead)
        batch = interleaved({"raw_mget10": lambda: raw.mget(raw_keys),
                             "tier_get_many10": lambda: tier.get_many(keys)}, n, overhead)
    finally:
        tier.clear_namespace()
        tier.close()
        raw.close()
    return {**single, **batch,
            "get_overhead_pct": (single["tier_get"] / single["raw_get"] - 1) * 100,
            "get_many_overhead_pct": (batch["tier_get_many10"] / batch["raw_mget10"] - 1) * 100}


def bench_l3(n: int, overhead: float) -> dict[str, Any]:
    import sqlite3

    from engine.cache.store_tier import StoreTier
    from engine.store import open_store

    out: dict[str, Any] = {}
    blob = encode([None, {"min_notional": 5.0, "amount_step": 1e-6}])
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "b.db", Path(tmp))
        tier = StoreTier(store, "supreme:bench:")
        tier.set_many({f"k{i}": blob for i in range(1000)})
        conn = sqlite3.connect(Path(tmp) / "b.db")
        sql = ("SELECT key, value FROM cache_entries WHERE namespace = ? AND key = ? AND "
               "(expires_at_ms IS NULL OR expires_at_ms > ?)")
        now = int(time.time() * 1000)
        out["sqlite"] = interleaved({
            "raw_select": lambda: conn.execute(sql, ("supreme:bench:", "k42", now)).fetchall(),
            "tier_get": lambda: tier.get("k42")}, n, overhead)
        conn.close()
        tier.close()
        store.close()
        try:
            import psycopg

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'CREATE SCHEMA "{schema}"')
            try:
                url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
                pg = open_store(url, Path(tmp))
                pg_tier = StoreTier(pg, "supreme:bench:")
                pg_tier.set_many({f"k{i}": blob for i in range(1000)})
                raw_pg = psycopg.connect(url, autocommit=True)
                pg_sql = sql.replace("?", "%s")
                out["postgresql"] = interleaved({
                    "raw_select": lambda: raw_pg.execute(
                        pg_sql, ("supreme:bench:", "k42", now)).fetchall(),
                    "tier_get": lambda: pg_tier.get("k42")}, max(500, n // 4), overhead)
                raw_pg.close()
                pg_tier.close()
                pg.close()
            finally:
                with psycopg.connect(PG_URL, autocommit=True) as admin:
                    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        except Exception as exc:
            out["postgresql"] = {"skipped": f"PostgreSQL at {PG_URL}: {exc}"}
    return out


def bench_traces(quick: bool) -> dict[str, Any]:
    from engine.cache import traces
    from engine.cache.bench import run_bench

    out: dict[str, Any] = {}
    for name in ("cooccur", "scan"):
        keys = list(getattr(traces, name)(0))
        if quick:
            keys = keys[:50_000]
        out[name] = run_bench(keys, trace_name=name, seed=0)
    data = DATA / "ETH_USDT-1m.json"
    if data.is_file():
        from engine.cache.engine_trace import record_engine_trace

        keys = record_engine_trace(data, bars=10_000 if quick else None)
        out["engine"] = run_bench(keys, trace_name="engine",
                                  capacity=CacheSettings().l1_capacity, seed=0)
    return out


def run(quick: bool) -> dict[str, Any]:
    n = 3_000 if quick else 20_000
    overhead = timer_overhead_ns()
    res: dict[str, Any] = {"timer_overhead_ns": overhead}
    res["l1"] = bench_l1(n * 5, overhead)
    res["learning"] = bench_learning(quick)
    res["l2"] = bench_l2(n // 4, overhead)
    res["l3"] = bench_l3(n, overhead)
    res["traces"] = bench_traces(quick)
    t = res["traces"]
    targets: dict[str, bool] = {
        "L1 get p50 <= 0.5 us": res["l1"]["manager_get"] <= 0.5,
        "learning + prediction <= 2 us per access": res["learning"]["learn_and_predict_us"] <= 2,
        "L3 SQLite get p50 <= 10 us": res["l3"]["sqlite"]["tier_get"] <= 10,
    }
    if "tier_get" in res["l2"]:
        targets["L2 get adds <= 10% over raw redis-py GET"] = res["l2"]["get_overhead_pct"] <= 10
    if "tier_get" in res["l3"].get("postgresql", {}):
        targets["L3 PostgreSQL get p50 <= 200 us"] = res["l3"]["postgresql"]["tier_get"] <= 200
    for doc in t.values():
        for goal in doc.get("goals", []):
            targets[f"{doc['trace']}: {goal['goal']}"] = bool(goal["met"])
    res["targets"] = targets
    return res


def render(res: dict[str, Any]) -> str:
    l1, l2, l3 = res["l1"], res["l2"], res["l3"]
    lines = ["| operation | p50 µs | baseline in the same run | p50 µs |", "|---|---|---|---|",
             f"| L1 manager get (hit) | {l1['manager_get']:.3f} | dict.get | "
             f"{l1['dict_get']:.3f} |",
             f"| TieredCache.get, L1 hit, prefetch off | {l1['tiered_get']:.3f} | | |",
             f"| TieredCache.get, L1 hit, learning on | {l1['tiered_get_learning']:.3f} | | |"]
    if "tier_get" in l2:
        lines += [f"| L2 RedisTier.get | {l2['tier_get']:.1f} | redis-py GET | "
                  f"{l2['raw_get']:.1f} ({l2['get_overhead_pct']:+.1f} %) |",
                  f"| L2 get_many of 10 | {l2['tier_get_many10']:.1f} | redis-py MGET | "
                  f"{l2['raw_mget10']:.1f} ({l2['get_many_overhead_pct']:+.1f} %) |"]
    else:
        lines.append(f"| L2 | skipped: {l2.get('skipped')} | | |")
    lines.append(f"| L3 SQLite get | {l3['sqlite']['tier_get']:.1f} | sqlite3 SELECT | "
                 f"{l3['sqlite']['raw_select']:.1f} |")
    pg = l3.get("postgresql", {})
    if "tier_get" in pg:
        lines.append(f"| L3 PostgreSQL get | {pg['tier_get']:.1f} | psycopg SELECT | "
                     f"{pg['raw_select']:.1f} |")
    else:
        lines.append(f"| L3 PostgreSQL | skipped: {pg.get('skipped')} | | |")
    lr = res["learning"]
    lines += ["", f"Learning plus prediction: {lr['learn_and_predict_us']:.2f} µs per access "
              f"over {lr['accesses']:,} co-access keys ({lr['edges']:,} edges kept).", "",
              "| trace | accesses | distinct | capacity | LRU | LFU | neuromorphic | "
              "prefetch precision | recall | wasted | ns/access LRU / neuro |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, doc in res["traces"].items():
        p = doc["policies"]
        nm = p["neuromorphic"]

        def pct(v: Any) -> str:
            return "–" if v is None else f"{v * 100:.1f} %"

        lines.append(
            f"| {name} | {doc['accesses']:,} | {doc['distinct_keys']:,} | {doc['capacity']:,} |"
            f" {pct(p['lru']['hit_rate'])} | {pct(p['lfu']['hit_rate'])} | "
            f"{pct(nm['hit_rate'])} | {pct(nm['prefetch_precision'])} | "
            f"{pct(nm['prefetch_recall'])} | {nm['wasted_prefetches']:,} | "
            f"{p['lru']['ns_per_access']:.0f} / {nm['ns_per_access']:.0f} |")
    lines += ["", "Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}"
                                          for k, v in res["targets"].items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="cache tier benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    res = run(args.quick)
    print(render(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
