"""The tiered cache against the real Redis and PostgreSQL, and the embedded SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cache import CacheSettings, TieredCache, open_cache
from engine.cache.base import RemoteTier, TierError
from engine.errors import StoreError
from engine.store import Store, open_store


def _env() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(tmp_path / "s.db", tmp_path)
    yield store
    store.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    client.close()


def _drop_namespace(client: Any, env: str) -> None:
    for key in client.scan_iter(match=f"supreme:{env}:*", count=500):
        client.unlink(key)


def test_embedded_default_serves_from_l1_and_l3(sqlite_store: Store) -> None:
    settings = CacheSettings(env=_env())
    with open_cache(settings, sqlite_store) as cache:
        assert cache.l2 is None
        cache.set("market:paper:ETH-USDT", {"min_notional": 5.0})
        assert cache.get("market:paper:ETH-USDT") == {"min_notional": 5.0}
        assert cache.stats()["tiers"]["l1"]["hits"] == 1
    # a new process starts with an empty L1: L3 serves, and promotes into L1
    with open_cache(settings, sqlite_store) as cache:
        assert cache.get("market:paper:ETH-USDT") == {"min_notional": 5.0}
        assert cache.get("market:paper:ETH-USDT") == {"min_notional": 5.0}
        tiers = cache.stats()["tiers"]
        assert (tiers["l3"]["hits"], tiers["l1"]["hits"]) == (1, 1)
        assert cache.get("absent") is None
        assert cache.stats()["tiers"]["l3"]["misses"] == 1


def test_ttl_expires_in_every_tier(sqlite_store: Store) -> None:
    import time

    settings = CacheSettings(env=_env())
    with open_cache(settings, sqlite_store) as cache:
        cache.set("orderbook:ETH-USDT", [1, 2], ttl_s=0.2)
        assert cache.get("orderbook:ETH-USDT") == [1, 2]
        time.sleep(0.3)
        assert cache.get("orderbook:ETH-USDT") is None
    with open_cache(settings, sqlite_store) as cache:
        assert cache.get("orderbook:ETH-USDT") is None


class _RefusingTier(RemoteTier):
    name = "l3"

    def get_many(self, keys: Any) -> dict[str, bytes]:
        raise TierError("refused")

    def set_many(self, items: Any, ttl_s: float | None = None) -> None:
        raise TierError("refused")

    def delete_many(self, keys: Any) -> int:
        raise TierError("refused")

    def clear_namespace(self) -> int:
        raise TierError("refused")

    def size(self) -> int | None:
        raise TierError("refused")

    def info(self) -> dict[str, Any]:
        return {}

    def ping(self) -> None:
        raise TierError("refused")

    def close(self) -> None:
        pass


def test_durable_write_raises_when_l3_refuses_and_leaves_no_copy_elsewhere() -> None:
    with TieredCache(CacheSettings(env=_env()), l3=_RefusingTier()) as cache:
        with pytest.raises(StoreError, match="durable write"):
            cache.set("state:x", {"a": 1})
        assert not cache.l1.contains("state:x")
        # a read fails open: a miss, counted, and the breaker opens after the threshold
        for _ in range(5):
            assert cache.get("state:x") is None
        stats = cache.stats()
        assert stats["tiers"]["l3"]["errors"] == 3
        assert stats["tiers"]["l3"]["skipped"] == 2
        assert stats["tiers"]["l3"]["breaker"] == "open"
        assert stats["degraded"] is True


def test_publish_writes_behind_to_l3(sqlite_store: Store) -> None:
    settings = CacheSettings(env=_env())
    with open_cache(settings, sqlite_store) as cache:
        for i in range(100):
            cache.publish("ticker:ETH-USDT", (i, 100.0 + i, 1.0), ttl_s=60)
        assert cache.flush(5.0)
        assert cache.get("ticker:ETH-USDT") == [99, 199.0, 1.0]
        # coalesced: 100 publishes of one key are one or a few L3 rows writes, not 100
        assert cache.stats()["tiers"]["l3"]["writes"] < 100
    with open_cache(settings, sqlite_store) as cache:
        assert cache.get("ticker:ETH-USDT") == [99, 199.0, 1.0]


def test_learning_persists_in_l3_across_restarts(sqlite_store: Store) -> None:
    settings = CacheSettings(env=_env())
    group = ["ETH-USDT-price", "ETH-USDT-volume", "ETH-USDT-orderbook", "ETH-USDT-trades"]
    with open_cache(settings, sqlite_store) as cache:
        for _ in range(30):
            for key in group:
                cache.l1.learn_access_pattern(key)
        assert cache.save_learning() > 0
    with open_cache(settings, sqlite_store) as cache:
        predicted = cache.l1.predict_prefetch_candidates("ETH-USDT-price")
        assert set(predicted) >= {"ETH-USDT-volume", "ETH-USDT-orderbook", "ETH-USDT-trades"}
        cache.reset(learning=True)
    with open_cache(settings, sqlite_store) as cache:
        assert cache.l1.predict_prefetch_candidates("ETH-USDT-price") == []


def test_prefetch_loads_learned_neighbours_from_l3(sqlite_store: Store) -> None:
    settings = CacheSettings(env=_env())
    group = [f"G1-{k}" for k in ("price", "volume", "orderbook", "trades")]
    with open_cache(settings, sqlite_store) as cache:
        for key in group:
            cache.set(key, key.upper())
        for _ in range(20):
            for key in group:
                cache.get(key)
        cache.save_learning()
    with open_cache(settings, sqlite_store) as cache:
        assert cache.get("G1-price") == "G1-PRICE"
        assert cache.flush(5.0)
        assert all(cache.l1.contains(k) for k in group[1:])
        assert cache.stats()["counters"]["prefetch_loaded"] == 3
        for key in group[1:]:
            cache.get(key)
        assert cache.stats()["neuromorphic"]["prefetch_hits"] == 3


@pytest.mark.redis
def test_l2_promotion_and_namespacing(sqlite_store: Store, redis_url: str,
                                     redis_client: Any) -> None:
    env = _env()
    settings = CacheSettings(env=env, redis_url=redis_url)
    try:
        with open_cache(settings, sqlite_store) as cache:
            cache.set("market:binance:ETH-USDT", {"min_notional": 5.0})
        keys = {k.decode() for k in redis_client.scan_iter(match=f"supreme:{env}:*")}
        assert f"supreme:{env}:market:binance:ETH-USDT" in keys
        assert all(k.startswith(f"supreme:{env}:") for k in keys)
        # L2 serves a new process before L3 does
        with open_cache(settings, sqlite_store) as cache:
            assert cache.get("market:binance:ETH-USDT") == {"min_notional": 5.0}
            tiers = cache.stats()["tiers"]
            assert (tiers["l2"]["hits"], tiers["l3"]["hits"]) == (1, 0)
        # an entry only L3 holds is promoted into L2 on read
        _drop_namespace(redis_client, env)
        with open_cache(settings, sqlite_store) as cache:
            assert cache.get("market:binance:ETH-USDT") == {"min_notional": 5.0}
            assert cache.stats()["tiers"]["l3"]["hits"] == 1
        assert redis_client.exists(f"supreme:{env}:market:binance:ETH-USDT")
    finally:
        _drop_namespace(redis_client, env)


@pytest.mark.redis
def test_reset_deletes_only_our_namespace(sqlite_store: Store, redis_url: str,
                                          redis_client: Any) -> None:
    env, other_env = _env(), _env()
    tenant = f"othertenant:{uuid.uuid4().hex}"
    neighbour = f"supreme:{other_env}:x"
    redis_client.set(tenant, b"keep")
    redis_client.set(neighbour, b"keep")
    try:
        settings = CacheSettings(env=env, redis_url=redis_url)
        with open_cache(settings, sqlite_store) as cache:
            for i in range(50):
                cache.set(f"k{i}", i)
            done = cache.reset(learning=True, l1=True, l2=True)
        assert done["l2_keys_deleted"] >= 50
        assert not list(redis_client.scan_iter(match=f"supreme:{env}:*"))
        assert redis_client.get(tenant) == b"keep"
        assert redis_client.get(neighbour) == b"keep"
    finally:
        redis_client.delete(tenant, neighbour)
        _drop_namespace(redis_client, env)


@pytest.mark.postgres
def test_same_code_paths_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_url, tmp_path)
    try:
        settings = CacheSettings(env=_env())
        with open_cache(settings, store) as cache:
            cache.set("market:binance:ETH-USDT", {"min_notional": 5.0, "raw": b"\x00\x01"})
            cache.publish("ticker:ETH-USDT", (1, 2.0, 3.0), ttl_s=60)
            for _ in range(10):
                cache.l1.learn_access_pattern("a")
                cache.l1.learn_access_pattern("b")
            assert cache.flush(5.0)
            cache.save_learning()
        with open_cache(settings, store) as cache:
            assert cache.get("market:binance:ETH-USDT") == {"min_notional": 5.0,
                                                            "raw": b"\x00\x01"}
            assert cache.get("ticker:ETH-USDT") == [1, 2.0, 3.0]
            assert "b" in cache.l1.predict_prefetch_candidates("a")
            assert cache.l3 is not None and cache.l3.tier.size() == 2
    finally:
        store.close()
