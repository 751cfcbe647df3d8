"""The three-tier cache (L1 in process, L2 Redis, L3 the store) and its benchmark.

`open_cache` builds the tiers a configuration asks for: L2 only when a Redis URL is set
(redis-py is imported then, not before), L3 on the run's own store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.cache.base import TierError, namespace
from engine.cache.tiered import CacheSettings, TieredCache
from engine.errors import ServiceUnavailable

if TYPE_CHECKING:
    from engine.config import Resolved
    from engine.store.base import Store

__all__ = ["CacheSettings", "TierError", "TieredCache", "cache_settings", "open_cache"]


def cache_settings(resolved: Resolved) -> CacheSettings:
    c = resolved.section("cache")
    return CacheSettings(
        env=c["env"], l1_capacity=c["l1_capacity"], l2_max_entries=c["l2_max_entries"],
        redis_url=resolved.values.get("redis_url"), redis_timeout_s=c["redis_timeout"],
        l3_timeout_s=c["l3_timeout"], breaker_threshold=c["breaker_threshold"],
        breaker_reset_s=c["breaker_reset"], prefetch=c["prefetch"],
        learning_rate=c["learning_rate"], decay_rate=c["decay_rate"])


def open_cache(settings: CacheSettings, store: Store | None, *, require_redis: bool = False,
               warn: Any = None, load_learning: bool = True) -> TieredCache:
    """The tiered cache. A Redis that does not answer leaves the cache degraded (a warning
    through `warn`), or raises ServiceUnavailable when `require_redis`."""
    ns = namespace(settings.env)
    l2 = l3 = None
    if settings.redis_url:
        from engine.cache.redis_tier import RedisTier

        l2 = RedisTier(settings.redis_url, settings.env, max_entries=settings.l2_max_entries,
                       socket_timeout_s=settings.redis_timeout_s,
                       connect_timeout_s=settings.redis_timeout_s)
        try:
            l2.ping()
        except TierError as exc:
            if require_redis:
                l2.close()
                raise ServiceUnavailable(f"Redis is required but does not answer: {exc}"
                                         ) from exc
            if warn is not None:
                warn(f"cache: L2 Redis is down, starting degraded on L1 and L3 ({exc})")
    if store is not None:
        from engine.cache.store_tier import StoreTier

        l3 = StoreTier(store, ns, timeout_s=settings.l3_timeout_s)
    cache = TieredCache(settings, l2=l2, l3=l3)
    if load_learning:
        cache.load_learning()
    return cache
