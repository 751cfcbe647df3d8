"""RedisTier against the shared Redis: namespacing, TTL, the entry bound, a reset that spares
other tenants, and an info() that reads the memory policy without changing it.

Each test works under its own `supreme:t<hex>:` namespace and removes it afterwards; keys
written for other "tenants" are deleted by the test that wrote them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis")

from engine.cache.base import TierError  # noqa: E402
from engine.cache.redis_tier import (  # noqa: E402
    EXPIRY_NAME,
    INDEX_NAME,
    RedisTier,
    _escape_glob,
)
from engine.errors import ConfigError  # noqa: E402


def _env() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def raw(redis_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    yield client
    client.close()


@pytest.fixture
def env() -> str:
    return _env()


@pytest.fixture
def tier(redis_url: str, env: str) -> Iterator[RedisTier]:
    made = RedisTier(redis_url, env)
    yield made
    made.clear_namespace()
    made.close()


def _keys_under(raw: Any, prefix: str) -> set[str]:
    return {k.decode() for k in raw.scan_iter(match=_escape_glob(prefix) + "*", count=1000)}


def test_keys_land_under_the_namespace(tier: RedisTier, raw: Any, env: str) -> None:
    tier.set_many({"alpha": b"1", "beta": b"2"})
    prefix = f"supreme:{env}:"
    assert tier.prefix == prefix
    assert raw.get(prefix + "alpha") == b"1"
    # no TTL was written, so there is no expiry set yet
    assert _keys_under(raw, prefix) == {prefix + "alpha", prefix + "beta", prefix + INDEX_NAME}
    assert raw.get("alpha") is None


def test_get_set_get_many_delete(tier: RedisTier) -> None:
    assert tier.get("missing") is None
    assert tier.get_many([]) == {}
    tier.set_many({})
    tier.set_many({"a": b"\x00\xffbinary", "b": b"2", "c": b"3"})
    assert tier.get("a") == b"\x00\xffbinary"
    assert tier.get_many(["a", "nope", "c"]) == {"a": b"\x00\xffbinary", "c": b"3"}
    assert tier.size() == 3
    assert tier.delete_many(["a", "nope"]) == 1
    assert tier.delete_many([]) == 0
    assert tier.get("a") is None
    assert tier.size() == 2
    tier.set_many({"b": b"two"})
    assert tier.get("b") == b"two"
    assert tier.size() == 2


def test_ttl_expiry(tier: RedisTier, raw: Any) -> None:
    tier.set_many({"short": b"s"}, ttl_s=0.2)
    tier.set_many({"forever": b"f"})
    assert 0 < raw.pttl(tier.prefix + "short") <= 200
    assert raw.pttl(tier.prefix + "forever") == -1
    assert tier.get("short") == b"s"
    time.sleep(0.35)
    assert tier.get("short") is None
    assert tier.get_many(["short", "forever"]) == {"forever": b"f"}
    assert tier.size() == 1  # the expired key's index entry is not counted


def test_rewrite_without_ttl_makes_a_key_persistent(tier: RedisTier, raw: Any) -> None:
    tier.set_many({"k": b"1"}, ttl_s=0.2)
    tier.set_many({"k": b"2"})
    time.sleep(0.3)
    assert tier.get("k") == b"2"
    assert raw.zcard(tier.prefix + EXPIRY_NAME) == 0
    assert tier.size() == 1


def test_non_positive_ttl_reads_as_stale(tier: RedisTier) -> None:
    tier.set_many({"gone": b"x"}, ttl_s=0)
    time.sleep(0.01)
    assert tier.get("gone") is None


def test_size_bound_evicts_the_oldest(redis_url: str, raw: Any) -> None:
    bounded = RedisTier(redis_url, _env(), max_entries=20)
    try:
        for i in range(50):
            bounded.set_many({f"k{i:02d}": b"v"})
            size = bounded.size()
            assert size is not None and size <= 20
            time.sleep(0.002)  # distinct write times, so "oldest" is well defined
        assert raw.zcard(bounded.prefix + INDEX_NAME) <= 20
        assert bounded.get("k49") == b"v"
        assert bounded.get("k00") is None
        live = bounded.get_many([f"k{i:02d}" for i in range(50)])
        assert 19 <= len(live) <= 20  # 1% hysteresis rounds to one entry at this size
        assert min(live) >= "k30"
        assert len(_keys_under(raw, bounded.prefix)) <= 21  # the entries and the index
    finally:
        bounded.clear_namespace()
        bounded.close()


def test_one_big_write_is_trimmed_to_the_bound(redis_url: str) -> None:
    bounded = RedisTier(redis_url, _env(), max_entries=100)
    try:
        bounded.set_many({f"k{i}": b"v" for i in range(1000)})
        size = bounded.size()
        assert size is not None and 99 <= size <= 100
    finally:
        bounded.clear_namespace()
        bounded.close()


def test_index_stays_bounded_when_keys_expire(redis_url: str, raw: Any) -> None:
    bounded = RedisTier(redis_url, _env(), max_entries=20)
    try:
        for batch in range(10):
            bounded.set_many({f"b{batch}-{i}": b"v" for i in range(10)}, ttl_s=0.03)
            time.sleep(0.04)
            assert raw.zcard(bounded.prefix + INDEX_NAME) <= 20
            assert raw.zcard(bounded.prefix + EXPIRY_NAME) <= 20
        assert bounded.size() == 0
        bounded.set_many({f"live{i}": b"v" for i in range(15)})
        assert bounded.size() == 15  # the ghosts were pruned, not live keys evicted
        assert len(bounded.get_many([f"live{i}" for i in range(15)])) == 15
    finally:
        bounded.clear_namespace()
        bounded.close()


def test_reserved_bookkeeping_keys_are_refused(tier: RedisTier) -> None:
    with pytest.raises(ConfigError):
        tier.set_many({INDEX_NAME: b"x"})
    with pytest.raises(ConfigError):
        tier.delete_many([EXPIRY_NAME])
    assert tier.get(INDEX_NAME) is None  # a sorted set under the name reads as a miss


def test_clear_namespace_spares_other_tenants(tier: RedisTier, raw: Any, env: str) -> None:
    other_tenant = f"othertenant:{uuid.uuid4().hex}"
    other_env = f"supreme:{_env()}:x"
    lookalike = f"supreme:{env}x:y"  # same characters plus one: a different namespace
    raw.set(other_tenant, b"keep", ex=60)
    raw.set(other_env, b"keep", ex=60)
    raw.set(lookalike, b"keep", ex=60)
    try:
        tier.set_many({f"k{i}": b"v" for i in range(2500)})
        tier.set_many({"t": b"v"}, ttl_s=30)
        assert tier.clear_namespace() == 2501
        assert _keys_under(raw, tier.prefix) == set()
        assert tier.size() == 0
        for key in (other_tenant, other_env, lookalike):
            assert raw.get(key) == b"keep"
        assert tier.clear_namespace() == 0
    finally:
        raw.delete(other_tenant, other_env, lookalike)


def _config_snapshot(raw: Any) -> dict[Any, Any] | None:
    try:
        return dict(raw.config_get("*"))
    except redis.exceptions.ResponseError:
        return None  # CONFIG disabled here: nothing to compare, info() must still work


def test_info_reads_the_memory_policy_and_changes_nothing(tier: RedisTier, raw: Any) -> None:
    before = _config_snapshot(raw)
    facts = tier.info()
    after = _config_snapshot(raw)
    assert before == after
    assert "error" not in facts
    assert facts["max_entries"] == 100_000
    assert facts["socket_timeout_s"] == 0.25
    assert isinstance(facts["maxmemory"], int)
    assert isinstance(facts["maxmemory_policy"], str)
    if before is not None:
        assert facts["policy_source"] == "CONFIG GET"
        assert facts["maxmemory"] == int(before["maxmemory"])
        assert facts["maxmemory_policy"] == before["maxmemory-policy"]
    if facts["maxmemory"] == 0:
        assert "unbounded" in facts["note"]


def test_info_falls_back_to_info_memory(tier: RedisTier, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    def disabled(*_args: Any, **_kwargs: Any) -> Any:
        raise redis.exceptions.ResponseError("unknown command 'CONFIG'")

    monkeypatch.setattr(tier.client, "config_get", disabled)
    facts = tier.info()
    assert facts["policy_source"] == "INFO memory"
    assert isinstance(facts["maxmemory"], int)
    assert facts["maxmemory_policy"]


@pytest.mark.parametrize(("maxmemory", "policy", "warns", "notes"), [
    (100_000_000, "noeviction", True, False),
    (100_000_000, "volatile-lru", True, False),
    (100_000_000, "allkeys-lru", False, False),
    (0, "noeviction", False, True),
    (0, "allkeys-lru", False, True),
])
def test_policy_advice(maxmemory: int, policy: str, warns: bool, notes: bool) -> None:
    warning, note = RedisTier._policy_advice(maxmemory, policy)
    assert (warning is not None) == warns
    assert (note is not None) == notes


def test_password_never_appears(redis_url: str) -> None:
    host = redis_url.split("@")[-1].split("//")[-1]
    secret_url = f"redis://someone:pw-S3cret%21@{host}"
    tier = RedisTier(secret_url, _env())
    try:
        assert "S3cret" not in tier.info()["url"]
        try:
            tier.ping()  # the shared server rejects this user, or has no ACL users at all
        except TierError as exc:
            assert "S3cret" not in str(exc)
        assert "S3cret" not in repr(tier.info())
    finally:
        tier.close()


def test_retries_are_off_and_the_handshake_is_trimmed(tier: RedisTier) -> None:
    connection: Any = tier.client.connection_pool.make_connection()
    try:
        assert connection.retry.get_retries() == 0
        assert connection.driver_info is None  # no CLIENT SETINFO round trips on connect
        assert connection.socket_timeout == 0.25
        assert connection.socket_connect_timeout == 0.25
    finally:
        connection.disconnect()


def test_invalid_settings_are_config_errors(redis_url: str) -> None:
    with pytest.raises(ConfigError):
        RedisTier("ftp://127.0.0.1:6379/0", _env())
    with pytest.raises(ConfigError):
        RedisTier(redis_url, "bad env!")
    with pytest.raises(ConfigError):
        RedisTier(redis_url, _env(), max_entries=0)


def test_glob_specials_are_escaped() -> None:
    assert _escape_glob("supreme:a*b?[c]\\:") == "supreme:a\\*b\\?\\[c\\]\\\\:"
