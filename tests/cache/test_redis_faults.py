"""RedisTier under faults, on a private redis-server (never the shared one) and a TCP proxy:
every call returns or raises TierError within a bounded time, and the tier recovers.

The bound (timeout * 4 + 0.5 s) is behavioural: a hang would blow through it, an honest
timeout never comes near it. Every loop here runs a fixed number of times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.cache.base import TierError
from engine.cache.redis_tier import RedisTier
from engine.testing.redis_server import RedisServer, free_port
from engine.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT_S = 0.25
BOUND_S = TIMEOUT_S * 4 + 0.5


@pytest.fixture
def tier(server: RedisServer) -> Iterator[RedisTier]:
    made = RedisTier(server.url, "faults", socket_timeout_s=TIMEOUT_S,
                     connect_timeout_s=TIMEOUT_S)
    yield made
    made.close()


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", server.port) as running:
        yield running


@pytest.fixture
def proxied(proxy: TcpProxy) -> Iterator[RedisTier]:
    made = RedisTier(f"redis://127.0.0.1:{proxy.port}/0", "faults",
                     socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
    yield made
    made.close()


def _operations(tier: RedisTier) -> dict[str, Callable[[], Any]]:
    return {
        "get": lambda: tier.get("a"),
        "get_many": lambda: tier.get_many(["a", "b"]),
        "set_many": lambda: tier.set_many({"c": b"3"}, ttl_s=10),
        "delete_many": lambda: tier.delete_many(["c"]),
        "size": tier.size,
        "ping": tier.ping,
        "clear_namespace": tier.clear_namespace,
    }


def _timed(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def _assert_every_call_fails_in_bounds(tier: RedisTier) -> None:
    for name, call in _operations(tier).items():
        elapsed, exc = _timed(call)
        assert isinstance(exc, TierError), f"{name} gave {exc!r}, expected TierError"
        assert elapsed < BOUND_S, f"{name} took {elapsed:.3f}s"


def _assert_works(tier: RedisTier) -> None:
    tier.set_many({"probe": b"ok"})
    assert tier.get("probe") == b"ok"
    tier.delete_many(["probe"])


def test_constructing_against_a_dead_port_neither_raises_nor_blocks() -> None:
    start = time.monotonic()
    tier = RedisTier(f"redis://127.0.0.1:{free_port()}/0", "faults",
                     socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < TIMEOUT_S
    elapsed, exc = _timed(tier.ping)
    assert isinstance(exc, TierError)
    assert elapsed < BOUND_S
    assert "error" in tier.info()
    tier.close()


def test_kill_then_restart(server: RedisServer, tier: RedisTier) -> None:
    tier.set_many({"a": b"1", "b": b"2"})
    assert tier.get_many(["a", "b"]) == {"a": b"1", "b": b"2"}
    server.kill()
    _assert_every_call_fails_in_bounds(tier)
    elapsed, exc = _timed(tier.info)
    assert exc is None and elapsed < BOUND_S
    server.start()  # same port, nothing persisted
    assert tier.get("a") is None
    assert tier.size() == 0
    _assert_works(tier)


def test_freeze_bounds_every_call_and_thaw_recovers_in_sync(server: RedisServer,
                                                            tier: RedisTier) -> None:
    tier.set_many({"a": b"1", "b": b"2"})
    server.freeze()
    _assert_every_call_fails_in_bounds(tier)
    late = RedisTier(server.url, "faults", socket_timeout_s=TIMEOUT_S,
                     connect_timeout_s=TIMEOUT_S)  # a connection opened while frozen
    elapsed, exc = _timed(late.ping)
    assert isinstance(exc, TierError) and elapsed < BOUND_S
    late.close()
    server.thaw()
    # connections that timed out were dropped, so no late reply is read as the next answer
    assert tier.get("b") == b"2"
    assert tier.get("a") == b"1"
    _assert_works(tier)


def test_concurrent_callers_are_each_bounded(server: RedisServer, tier: RedisTier) -> None:
    tier.set_many({"a": b"1"})
    server.freeze()
    timings: list[tuple[float, BaseException | None]] = []
    lock = threading.Lock()

    def call() -> None:
        outcome = _timed(lambda: tier.get("a"))
        with lock:
            timings.append(outcome)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_S * 2)
    server.thaw()
    assert len(timings) == 8
    for elapsed, exc in timings:
        assert isinstance(exc, TierError) and elapsed < BOUND_S


def test_proxy_delay_beyond_the_timeout_fails_fast(proxy: TcpProxy, proxied: RedisTier
                                                   ) -> None:
    proxied.set_many({"a": b"1"})
    proxy.set_mode("delay", delay_ms=TIMEOUT_S * 1000 * 3)
    elapsed, exc = _timed(lambda: proxied.get("a"))
    assert isinstance(exc, TierError) and elapsed < BOUND_S
    proxy.set_mode("delay", delay_ms=20)  # below the timeout: slower, still served
    assert proxied.get("a") == b"1"
    proxy.set_mode("pass")
    _assert_works(proxied)


@pytest.mark.parametrize("mode", ["blackhole", "reset", "refuse"])
def test_proxy_fault_then_pass_recovers(mode: str, proxy: TcpProxy, proxied: RedisTier
                                        ) -> None:
    proxied.set_many({"a": b"1"})
    proxy.set_mode(mode)  # type: ignore[arg-type]
    _assert_every_call_fails_in_bounds(proxied)
    if mode == "blackhole":
        assert proxy.counters["blackholed"] >= 1
    else:
        assert proxy.counters["resets"] >= 1
    proxy.set_mode("pass")
    assert proxied.get("a") == b"1"
    _assert_works(proxied)


def test_proxy_and_server_clean_up_within_bounds(server: RedisServer) -> None:
    proxy = TcpProxy("127.0.0.1", server.port, mode="blackhole")
    tiers = [RedisTier(f"redis://127.0.0.1:{proxy.port}/0", "faults",
                       socket_timeout_s=0.05, connect_timeout_s=0.05) for _ in range(3)]
    for tier in tiers:
        _timed(tier.ping)
    start = time.monotonic()
    proxy.close()
    assert time.monotonic() - start < 3.0
    assert proxy.active == 0
    for tier in tiers:
        tier.close()
    server.freeze()
    start = time.monotonic()
    server.stop()  # thaws first, so a frozen server still stops promptly
    assert time.monotonic() - start < 3.0
    assert not server.running
