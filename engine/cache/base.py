"""What every cache tier shares: the remote-tier interface, per-tier statistics, key
namespacing and the value codec.

L1 holds decoded Python values in process. L2 (Redis) and L3 (the store) hold encoded bytes
under a namespaced key, so one value is encoded once however many tiers it lands in. A tier
that fails raises `TierError`; the tiered cache above it counts the error, trips that tier's
breaker and carries on with the others (fail-open), except where a durable write needs L3.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from engine.errors import ConfigError, ServiceUnavailable
from engine.latency import LatencyHistogram

NAMESPACE_ROOT = "supreme"
_ENV_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MAX_KEY_LEN = 512


class TierError(ServiceUnavailable):
    """A cache tier could not serve a call (down, frozen, timed out, or refused it)."""


def namespace(env: str) -> str:
    """`supreme:<env>:`, the prefix of every key this project writes to a shared server."""
    if not _ENV_RE.match(env):
        raise ConfigError(f"cache env {env!r} must be 1-32 letters, digits, '_', '.' or '-'")
    return f"{NAMESPACE_ROOT}:{env}:"


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LEN or not key.isprintable():
        raise ConfigError(f"cache key must be 1-{MAX_KEY_LEN} printable characters")
    return key


def encode(value: Any) -> bytes:
    """Compact binary encoding (MessagePack): numbers, strings, bytes, lists and dicts."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"cache value is not serialisable: {exc}") from exc


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@dataclass
class TierStats:
    """Counters of one tier. Updated under the owning cache's lock or from one thread."""

    hits: int = 0
    misses: int = 0
    errors: int = 0          # calls that failed (timeouts, refused connections, SQL errors)
    skipped: int = 0         # calls not made because the tier's breaker was open
    writes: int = 0
    write_errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def hit_rate(self) -> float | None:
        looked = self.hits + self.misses
        return self.hits / looked if looked else None

    def as_dict(self) -> dict[str, Any]:
        lat = self.latency.summary_us()
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate,
                "errors": self.errors, "skipped": self.skipped, "writes": self.writes,
                "write_errors": self.write_errors,
                "latency_us": {"count": lat["count"], "p50": lat["p50"], "p99": lat["p99"],
                               "max": lat["max"]}}


class RemoteTier(ABC):
    """L2 or L3: bytes under logical keys; the tier adds its namespace itself.

    Every method raises TierError when the backing service fails, and must return or raise
    within the tier's configured timeout: nothing here may block indefinitely.
    """

    name: str = "remote"

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values found (missing and expired keys are absent)."""

    @abstractmethod
    def set_many(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None:
        """Store all items; ttl_s None means no expiry."""

    @abstractmethod
    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete the keys; returns how many existed (best known)."""

    @abstractmethod
    def clear_namespace(self) -> int:
        """Delete every key of this namespace, and nothing outside it; returns the count."""

    @abstractmethod
    def size(self) -> int | None:
        """Entries held in this namespace, or None when unknown."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Server facts worth showing (bounds, memory policy, URL redacted)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise TierError unless the tier answers."""

    @abstractmethod
    def close(self) -> None: ...

    def get(self, key: str) -> bytes | None:
        return self.get_many((key,)).get(key)

    # Learned weights of the neuromorphic layer: only a tier that persists them (L3)
    # overrides these.
    keeps_learning = False

    def save_associations(self, rows: Sequence[tuple[str, str, float]]) -> int:
        raise TierError(f"{self.name} keeps no learned weights")

    def load_associations(self) -> list[tuple[str, str, float]]:
        raise TierError(f"{self.name} keeps no learned weights")

    def clear_associations(self) -> int:
        raise TierError(f"{self.name} keeps no learned weights")
