"""`supreme cache stats|reset`: the persistent tiers, inspected or reset from outside a run.

An L1 lives inside a running engine, reached through its HTTP API (`--engine URL`, see
engine/observability/client.py). These functions act on L2 (Redis), L3 (the store) and the
learned weights, and report the last run's per-tier figures from the store.
"""

from __future__ import annotations

from typing import Any

from engine.cache import CacheSettings, open_cache
from engine.cache.base import TierError, namespace
from engine.errors import ServiceUnavailable
from engine.store.base import Store

ENGINE_NOT_REACHABLE = ("no running engine was given (--engine URL of a `supreme run "
                        "--metrics-port`), so a running run's in-process L1 is not included")


def _last_run_cache(store: Store) -> dict[str, Any] | None:
    for run in store.list_runs(limit=20):
        if run.summary and run.summary.get("cache"):
            return {"run_id": run.id, "started_at_ms": run.started_at_ms,
                    "cache": run.summary["cache"]}
    return None


def cache_status(settings: CacheSettings, store: Store, *, top: int = 10) -> dict[str, Any]:
    """Sizes, breaker probe, server memory policy and learned associations; read only."""
    cache = open_cache(settings, store, load_learning=True)
    try:
        tiers: dict[str, Any] = {"l1": {"status": "not reachable",
                                        "capacity": settings.l1_capacity}}
        for name, tier in (("l2", cache.l2), ("l3", cache.l3)):
            if tier is None:
                tiers[name] = {"status": "off"}
                continue
            entry: dict[str, Any] = {"info": tier.tier.info()}
            try:
                tier.tier.ping()
                entry["status"] = "ok"
                entry["size"] = tier.tier.size()
            except TierError as exc:
                entry["status"] = "down"
                entry["error"] = str(exc)[:300]
            tiers[name] = entry
        associations = [{"from": s, "to": d, "weight": w}
                        for s, d, w in cache.l1.top_associations(top)]
        return {"namespace": namespace(settings.env), "tiers": tiers,
                "learned_edges": cache.l1.learning_size(), "top_associations": associations,
                "last_run": _last_run_cache(store), "engine": ENGINE_NOT_REACHABLE}
    finally:
        cache.close(timeout=1.0)


def reset_cache(settings: CacheSettings, store: Store, *, learning: bool, l1: bool, l2: bool,
                l3: bool, engine_reachable: bool = False) -> dict[str, Any]:
    """Reset what is asked. L2 deletes only this namespace (SCAN + UNLINK, never FLUSHALL).
    Raises ServiceUnavailable when Redis is asked for and does not answer."""
    cache = open_cache(settings, store, load_learning=False)
    try:
        if l2 and cache.l2 is not None:
            try:
                cache.l2.tier.ping()
            except TierError as exc:
                raise ServiceUnavailable(f"cannot reset L2: {exc}") from exc
        done = cache.reset(learning=learning, l1=l1, l2=l2, l3=l3)
        notes = []
        if l1 and not engine_reachable:
            notes.append(ENGINE_NOT_REACHABLE + "; a new run starts with an empty L1")
        if l2 and cache.l2 is None:
            notes.append("L2 is off (no REDIS_URL): nothing to reset there")
        return {"namespace": namespace(settings.env), "reset": done, "notes": notes}
    finally:
        cache.close(timeout=1.0)
