"""The tiered cache fails open: Redis killed, restarted empty, frozen, slowed, black-holed
or reset, and PostgreSQL (L3) black-holed on the read path. In every case: no call blocks
past its bound, no durable write is lost, no stale value is served, and the tier is probed
back once the fault ends. Faults use a private redis-server and an in-test TCP proxy, never
the shared services. Every loop is bounded in count."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cache import CacheSettings, TieredCache, open_cache
from engine.store import Store, open_store
from engine.testing.redis_server import RedisServer
from engine.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT_S = 0.2
RESET_S = 0.5
BOUND_S = TIMEOUT_S * 4 + 0.5  # a hang blows through this; an honest timeout never nears it


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "s.db", tmp_path)
    yield s
    s.close()


def _settings(url: str) -> CacheSettings:
    return CacheSettings(env=f"f{uuid.uuid4().hex[:8]}", redis_url=url,
                         redis_timeout_s=TIMEOUT_S, breaker_threshold=2,
                         breaker_reset_s=RESET_S)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def _until(check: Callable[[], bool], limit_s: float = 5.0) -> bool:
    deadline = time.monotonic() + limit_s
    for _ in range(500):
        if check():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return False


def _l2(cache: TieredCache) -> dict[str, Any]:
    return dict(cache.stats()["tiers"]["l2"])


def _fresh_read(cache: TieredCache, key: str) -> Any:
    cache.l1.delete(key)  # force the read past L1
    return cache.get(key)


def test_redis_killed_mid_run_then_restarted_empty(server: RedisServer, store: Store) -> None:
    with open_cache(_settings(server.url), store) as cache:
        cache.set("k0", 0)
        server.kill()
        for i in range(1, 21):
            _, took = _timed(lambda i=i: cache.set(f"k{i}", i))
            assert took < BOUND_S
        l2 = _l2(cache)
        assert l2["errors"] >= 2 and l2["breaker"] == "open" and l2["skipped"] > 0
        assert cache.stats()["degraded"] is True
        # nothing was lost: L3 took every durable write
        for i in range(21):
            value, took = _timed(lambda i=i: _fresh_read(cache, f"k{i}"))
            assert value == i and took < BOUND_S
        server.restart()
        # probed back within the breaker's reset time, and refilled from L3 on read
        assert _until(lambda: _fresh_read(cache, "k5") == 5 and _l2(cache)["breaker"] == "closed")
        assert _fresh_read(cache, "k7") == 7
        assert _until(lambda: _l2(cache)["hits"] >= 0 and cache.flush(1.0))
    with open_cache(_settings(server.url), store) as again:
        assert again.l2 is not None and again.l2.tier.ping() is None


def test_frozen_redis_never_blocks_a_call(server: RedisServer, store: Store) -> None:
    with open_cache(_settings(server.url), store) as cache:
        cache.set("a", 1)
        server.freeze()
        try:
            worst = 0.0
            for i in range(10):
                _, took = _timed(lambda i=i: cache.set(f"b{i}", i))
                worst = max(worst, took)
                _, took = _timed(lambda: _fresh_read(cache, "a"))
                worst = max(worst, took)
            assert worst < BOUND_S
            assert _l2(cache)["breaker"] == "open"
        finally:
            server.thaw()
        assert _until(lambda: (_fresh_read(cache, "b3") == 3
                               and _l2(cache)["breaker"] == "closed"))
        assert all(_fresh_read(cache, f"b{i}") == i for i in range(10))


@pytest.mark.parametrize("mode", ["delay", "blackhole", "reset"])
def test_proxy_faults_are_bounded_and_recover(server: RedisServer, store: Store,
                                              mode: str) -> None:
    with TcpProxy("127.0.0.1", server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        with open_cache(_settings(url), store) as cache:
            cache.set("x", "before")
            proxy.set_mode(mode, delay_ms=TIMEOUT_S * 3000 if mode == "delay" else None)
            for i in range(8):
                _, took = _timed(lambda i=i: cache.set(f"y{i}", i))
                assert took < BOUND_S
            # the fault hid this write from Redis: after recovery L2 must not serve "before"
            cache.set("x", "after")
            assert _fresh_read(cache, "x") == "after"
            assert _l2(cache)["errors"] >= 1
            proxy.set_mode("pass")
            assert _until(lambda: (_fresh_read(cache, "x") == "after"
                                   and _l2(cache)["breaker"] == "closed"))
            # L2 itself holds the new value or nothing, never the old one
            assert cache.l2 is not None
            raw = cache.l2.tier.get("x")
            assert raw is None or b"after" in raw
            assert all(_fresh_read(cache, f"y{i}") == i for i in range(8))


def test_stale_value_invalidated_before_l2_serves_again(server: RedisServer,
                                                        store: Store) -> None:
    with TcpProxy("127.0.0.1", server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        with open_cache(_settings(url), store) as cache:
            cache.set("price", 1)
            proxy.set_mode("blackhole")
            cache.set("price", 2)  # L3 has 2, Redis still has 1
            proxy.set_mode("pass")
            time.sleep(RESET_S + 0.1)
            with open_cache(_settings(url), store) as other:  # an unrelated process
                assert other.get("x-unrelated") is None
            assert _fresh_read(cache, "price") == 2
            assert cache.stats()["counters"]["stale_invalidations"] >= 1


@pytest.mark.postgres
def test_l3_blackholed_on_the_read_path(postgres_url: str, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        proxied = postgres_url.replace(f"{parts.hostname}:{parts.port}",
                                       f"127.0.0.1:{proxy.port}", 1)
        store = open_store(proxied, tmp_path)
        try:
            settings = CacheSettings(env=f"f{uuid.uuid4().hex[:8]}", l3_timeout_s=0.5,
                                     breaker_threshold=2, breaker_reset_s=RESET_S)
            with open_cache(settings, store) as cache:
                cache.set("m", {"v": 1})
                proxy.set_mode("blackhole")
                for _ in range(4):
                    value, took = _timed(lambda: _fresh_read(cache, "m"))
                    assert value is None and took < 0.5 * 4 + 0.5
                l3 = cache.stats()["tiers"]["l3"]
                assert l3["errors"] >= 1 and l3["status"] == "degraded"
                proxy.set_mode("pass")
                assert _until(lambda: _fresh_read(cache, "m") == {"v": 1}, limit_s=10)
                assert cache.stats()["tiers"]["l3"]["breaker"] == "closed"
        finally:
            store.close()
