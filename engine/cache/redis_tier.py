"""L2: a Redis shared by other tenants, bounded in entries and in time per call.

Keys live under `supreme:<env>:` and nothing outside that prefix is ever written, deleted
or reconfigured. Two sorted sets under the same prefix keep the entry bound:

* `__index`: every logical key, scored by write time (ms). When a write leaves it above
  `max_entries`, the oldest entries are evicted down to a low-water mark (1% hysteresis,
  so eviction is one batch per ~1% of writes rather than one per write).
* `__expiry`: the keys written with a TTL, scored by deadline. Redis expires the values
  but not their index entries; eviction first drops those ghosts, so neither set outgrows
  `max_entries` (plus one prune batch) however many keys expire, and `size()` subtracts
  the ghosts not yet dropped.

Time bound. redis-py 7's `Redis()` retries 3 times with exponential backoff (up to 10 s);
here retries are off (`Retry(NoBackoff(), 0)`) and the handshake is trimmed (no CLIENT
SETINFO), so a round trip on a pooled connection fails within `socket_timeout_s`, and on a
fresh one within `connect_timeout_s + socket_timeout_s` (plus one `socket_timeout_s` each
for AUTH and SELECT when the URL has a password or a non-zero db). get/get_many/size/ping
are one round trip, delete_many one, set_many one plus three when it evicts. Caveat: the
timeout applies per socket read, so a server trickling bytes slower than the timeout but
never stopping can stretch a call; a stopped, dead or silent one cannot.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from engine.cache.base import RemoteTier, TierError, namespace
from engine.errors import ConfigError
from engine.store.base import redact_url

INDEX_NAME = "__index"
EXPIRY_NAME = "__expiry"
RESERVED_KEYS = frozenset({INDEX_NAME, EXPIRY_NAME})
_PRUNE_BATCH = 10_000  # ghosts dropped per eviction; keeps one ZREM short on the server
_UNLINK_BATCH = 1_000
_SCAN_COUNT = 1_000
_GLOB_SPECIALS = "\\*?[]^"


def _escape_glob(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in text)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RedisTier(RemoteTier):
    name = "l2"

    def __init__(self, url: str, env: str, *, max_entries: int = 100_000,
                 socket_timeout_s: float = 0.25, connect_timeout_s: float = 0.25) -> None:
        super().__init__()
        if max_entries < 1:
            raise ConfigError("L2 max_entries must be at least 1")
        if socket_timeout_s <= 0 or connect_timeout_s <= 0:
            raise ConfigError("L2 timeouts must be positive")
        self.prefix = namespace(env)
        self.url_redacted = redact_url(url)
        self.max_entries = max_entries
        self.low_water = max_entries - max(1, max_entries // 100)
        self.socket_timeout_s = socket_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._index = self.prefix + INDEX_NAME
        self._expiry = self.prefix + EXPIRY_NAME
        self._secrets = self._url_secrets(url)
        try:
            # from_url only parses: the first connection is made lazily by the first call,
            # so a Redis that is down costs nothing here and surfaces as a TierError later.
            self.client: redis.Redis = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=connect_timeout_s,
                retry=Retry(NoBackoff(), 0),
                retry_on_error=[],
                health_check_interval=0,
                driver_info=None,
            )
        except (ValueError, TypeError, RedisError) as exc:
            raise ConfigError(f"invalid Redis URL {self.url_redacted}: "
                              f"{self._scrub(str(exc))}") from None

    @staticmethod
    def _url_secrets(url: str) -> tuple[str, ...]:
        try:
            password = urlsplit(url).password
        except ValueError:
            return ()
        if not password:
            return ()
        return tuple({password, unquote(password)})

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, exc: BaseException) -> TierError:
        detail = self._scrub(str(exc)) or "no detail"
        return TierError(f"L2 ({self.url_redacted}): {type(exc).__name__}: {detail}")

    @contextmanager
    def _calling(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise self._fail(exc) from exc

    def _check_writable(self, keys: Sequence[str]) -> None:
        for key in keys:
            if key in RESERVED_KEYS:
                raise ConfigError(f"cache key {key!r} is reserved by the L2 tier")

    def get(self, key: str) -> bytes | None:
        # The hot path: one GET, no tuple or dict built around it.
        try:
            return self.client.get(self.prefix + key)  # type: ignore[return-value]
        except (RedisError, OSError) as exc:
            raise self._fail(exc) from exc

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if len(keys) == 1:
            # the tiered cache asks for one key at a time most often: GET beats MGET of one
            key = keys[0]
            value = self.get(key)
            return {} if value is None else {key: value}
        if not keys:
            return {}
        prefix = self.prefix
        try:
            values = self.client.mget([prefix + key for key in keys])
        except (RedisError, OSError) as exc:
            raise self._fail(exc) from exc
        return {key: value for key, value in zip(keys, values, strict=True)  # type: ignore[arg-type]
                if value is not None}

    def set_many(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None:
        if not items:
            return
        keys = list(items)
        self._check_writable(keys)
        now = _now_ms()
        # Redis rejects PX 0; a non-positive TTL means "already stale", as in L3.
        ttl_ms = None if ttl_s is None else max(1, int(ttl_s * 1000))
        prefix = self.prefix
        with self._calling():
            pipe = self.client.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(prefix + key, value, px=ttl_ms)
            pipe.zadd(self._index, dict.fromkeys(keys, now))
            if ttl_ms is None:
                pipe.zrem(self._expiry, *keys)
            else:
                pipe.zadd(self._expiry, dict.fromkeys(keys, now + ttl_ms))
            pipe.zcard(self._index)
            indexed = int(pipe.execute()[-1])
            if indexed > self.max_entries:
                self._evict(indexed, now)

    def _evict(self, indexed: int, now: int) -> None:
        """Drop expired keys' index entries, then evict the oldest down to the low-water
        mark. ZRANGE then UNLINK+ZREM (not ZPOPMIN first): if the connection dies between
        the two round trips, index entries survive and the next eviction retries them,
        instead of live keys being left outside the index and so outside the bound."""
        ghosts: list[bytes] = self.client.zrangebyscore(  # type: ignore[assignment]
            self._expiry, "-inf", now, start=0, num=_PRUNE_BATCH)
        live = indexed - len(ghosts)
        # A full prune batch means more ghosts may remain: evicting live keys now could
        # be needless, and the next write will prune again.
        excess = live - self.low_water if len(ghosts) < _PRUNE_BATCH else 0
        pipe = self.client.pipeline(transaction=False)
        if ghosts:
            pipe.zrem(self._index, *ghosts)
            pipe.zrem(self._expiry, *ghosts)
        if excess > 0:
            pipe.zrange(self._index, 0, excess - 1)
        results = pipe.execute() if len(pipe) else []
        if excess <= 0 or not results:
            return
        victims = [member.decode() for member in results[-1]]
        if not victims:
            return
        pipe = self.client.pipeline(transaction=False)
        for batch in _chunks(victims, _UNLINK_BATCH):
            pipe.unlink(*[self.prefix + key for key in batch])
            pipe.zrem(self._index, *batch)
            pipe.zrem(self._expiry, *batch)
        pipe.execute()

    def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        keys = list(keys)
        self._check_writable(keys)
        with self._calling():
            pipe = self.client.pipeline(transaction=False)
            pipe.unlink(*[self.prefix + key for key in keys])
            pipe.zrem(self._index, *keys)
            pipe.zrem(self._expiry, *keys)
            return int(pipe.execute()[0])

    def clear_namespace(self) -> int:
        """SCAN + UNLINK over this prefix only: one round trip per SCAN page and per batch,
        so the total time grows with the server's key count (never FLUSHDB: shared)."""
        pattern = _escape_glob(self.prefix) + "*"
        bookkeeping = {self._index.encode(), self._expiry.encode()}
        removed = 0
        with self._calling():
            pending: list[bytes] = []
            for name in self.client.scan_iter(match=pattern, count=_SCAN_COUNT):
                if name not in bookkeeping:
                    pending.append(name)
                if len(pending) >= _UNLINK_BATCH:
                    removed += int(self.client.unlink(*pending))  # type: ignore[arg-type]
                    pending.clear()
            if pending:
                removed += int(self.client.unlink(*pending))  # type: ignore[arg-type]
            self.client.unlink(self._index, self._expiry)
        return removed

    def size(self) -> int | None:
        with self._calling():
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(self._index)
            pipe.zcount(self._expiry, "-inf", _now_ms())
            indexed, expired = pipe.execute()
        return max(int(indexed) - int(expired), 0)

    def ping(self) -> None:
        with self._calling():
            self.client.ping()

    def info(self) -> dict[str, Any]:
        """Static bounds plus the server's memory policy, read only (CONFIG GET, else INFO
        memory, which managed Redis keeps when it disables CONFIG). Never raises for a
        server that cannot be read: `error` says why the server facts are missing."""
        facts: dict[str, Any] = {
            "url": self.url_redacted, "namespace": self.prefix,
            "max_entries": self.max_entries, "socket_timeout_s": self.socket_timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "maxmemory": None, "maxmemory_policy": None, "policy_source": None,
        }
        try:
            maxmemory, policy, source = self._memory_policy()
        except TierError as exc:
            facts["error"] = str(exc)
            return facts
        facts.update(maxmemory=maxmemory, maxmemory_policy=policy, policy_source=source)
        warning, note = self._policy_advice(maxmemory, policy)
        if warning:
            facts["warning"] = warning
        if note:
            facts["note"] = note
        return facts

    def _memory_policy(self) -> tuple[int | None, str | None, str]:
        try:
            config: dict[Any, Any] = self.client.config_get("maxmemory*")  # type: ignore[assignment]
        except redis.exceptions.ResponseError:
            config = {}  # CONFIG disabled or not permitted (NOPERM) on this server
        except (RedisError, OSError) as exc:
            raise self._fail(exc) from exc
        if "maxmemory" in config and "maxmemory-policy" in config:
            return int(config["maxmemory"]), str(config["maxmemory-policy"]), "CONFIG GET"
        with self._calling():
            memory: dict[str, Any] = self.client.info("memory")  # type: ignore[assignment]
        raw = memory.get("maxmemory")
        policy = memory.get("maxmemory_policy")
        return (None if raw is None else int(raw),
                None if policy is None else str(policy), "INFO memory")

    @staticmethod
    def _policy_advice(maxmemory: int | None, policy: str | None) -> tuple[str | None,
                                                                           str | None]:
        note = None
        if maxmemory == 0:
            note = ("maxmemory is 0 (unbounded): only this tier's max_entries bounds its "
                    "memory on the server")
        if not maxmemory or policy is None:
            return None, note
        if policy == "noeviction":
            return (f"maxmemory-policy is noeviction: once {maxmemory} bytes are used Redis "
                    "refuses writes (OOM), so L2 writes will fail until memory frees"), note
        if policy.startswith("volatile-"):
            return (f"maxmemory-policy is {policy}: only keys with a TTL can be evicted, so "
                    "entries written without a TTL can make Redis refuse writes when "
                    "full"), note
        return None, note

    def close(self) -> None:
        # closing a pool whose server is gone has nothing left to release
        with contextlib.suppress(RedisError, OSError):
            self.client.close()
