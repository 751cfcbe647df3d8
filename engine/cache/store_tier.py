"""L3: the engine's own store (SQLite by default, PostgreSQL when POSTGRES_URL is set).

Unbounded by count; expired entries read as misses and are purged now and then. The tier
works on its own bounded connection (`Store.bounded_clone`) so a cache call neither waits
behind the trade writer nor hangs on a frozen server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.cache.base import RemoteTier, TierError
from engine.errors import StoreError
from engine.store.base import Store
from engine.store.cache_tables import CacheTables


class StoreTier(RemoteTier):
    name = "l3"
    keeps_learning = True

    def __init__(self, store: Store, namespace: str, *, timeout_s: float = 1.0) -> None:
        super().__init__()
        self.namespace = namespace
        self._own = store.bounded_clone(timeout_s)
        self.tables = CacheTables(self._own)
        self.dialect = store.dialect

    def _fail(self, exc: StoreError) -> TierError:
        return TierError(f"L3 ({self._own.url_redacted}): {exc}")

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        try:
            return self.tables.get_many(self.namespace, keys)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def set_many(self, items: Mapping[str, bytes], ttl_s: float | None = None) -> None:
        try:
            self.tables.put_many(self.namespace, items.items(), ttl_s)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def delete_many(self, keys: Sequence[str]) -> int:
        try:
            return self.tables.delete_many(self.namespace, keys)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def clear_namespace(self) -> int:
        try:
            return self.tables.clear(self.namespace)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def purge_expired(self) -> int:
        try:
            return self.tables.purge_expired(self.namespace)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def size(self) -> int | None:
        try:
            return self.tables.count(self.namespace)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def info(self) -> dict[str, Any]:
        return {"url": self._own.url_redacted, "backend": self.dialect, "bound": "unbounded"}

    def ping(self) -> None:
        try:
            self._own._fetch("ping", "SELECT 1")
        except StoreError as exc:
            raise self._fail(exc) from exc

    # learned weights of the neuromorphic layer live beside the entries
    def save_associations(self, rows: Sequence[tuple[str, str, float]]) -> int:
        try:
            return self.tables.save_associations(self.namespace, rows)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def load_associations(self) -> list[tuple[str, str, float]]:
        try:
            return self.tables.load_associations(self.namespace)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def clear_associations(self) -> int:
        try:
            return self.tables.clear_associations(self.namespace)
        except StoreError as exc:
            raise self._fail(exc) from exc

    def close(self) -> None:
        self._own.close()
