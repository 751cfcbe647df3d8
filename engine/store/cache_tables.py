"""The store's side of the cache: L3 entries and the neuromorphic layer's learned weights.

Reads are single statements run outside an explicit transaction (`Store._fetch`), which is
what keeps an L3 hit on SQLite within a few microseconds. Writes are upserts, so a write-
behind batch replayed after a failure changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engine.store.base import Store, now_ms

_PUT = ("INSERT INTO cache_entries (namespace, key, value, expires_at_ms, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE SET "
        "value = excluded.value, expires_at_ms = excluded.expires_at_ms, "
        "updated_at_ms = excluded.updated_at_ms")
_GET_ONE = ("SELECT key, value FROM cache_entries WHERE namespace = ? AND key = ? "
            "AND (expires_at_ms IS NULL OR expires_at_ms > ?)")
_CHUNK = 500  # keeps IN (...) lists well under SQLite's parameter limit


def _bytes(value: Any) -> bytes:
    return bytes(value)  # PostgreSQL hands BYTEA back as memoryview


class CacheTables:
    """Cache queries over one Store. Give it a Store of its own (`store.clone()`), so a
    cache read never waits behind the writer thread's commit."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        now = now_ms()
        if len(keys) == 1:
            rows = self.store._fetch("cache get", _GET_ONE, (namespace, keys[0], now))
            return {k: _bytes(v) for k, v in rows}
        found: dict[str, bytes] = {}
        for i in range(0, len(keys), _CHUNK):
            part = list(keys[i:i + _CHUNK])
            marks = ", ".join("?" * len(part))
            rows = self.store._fetch(
                "cache get_many",
                f"SELECT key, value FROM cache_entries WHERE namespace = ? AND key IN ({marks})"
                " AND (expires_at_ms IS NULL OR expires_at_ms > ?)", (namespace, *part, now))
            found.update((k, _bytes(v)) for k, v in rows)
        return found

    def put_many(self, namespace: str, items: Iterable[tuple[str, bytes]],
                 ttl_s: float | None) -> int:
        now = now_ms()
        expires = None if ttl_s is None else now + int(ttl_s * 1000)
        rows = [(namespace, k, v, expires, now) for k, v in items]
        if rows:
            with self.store._tx("cache put", write=True) as tx:
                tx.executemany(_PUT, rows)
        return len(rows)

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        deleted = 0
        with self.store._tx("cache delete", write=True) as tx:
            for i in range(0, len(keys), _CHUNK):
                part = list(keys[i:i + _CHUNK])
                marks = ", ".join("?" * len(part))
                deleted += tx.execute(
                    f"DELETE FROM cache_entries WHERE namespace = ? AND key IN ({marks})",
                    (namespace, *part))
        return max(deleted, 0)

    def clear(self, namespace: str) -> int:
        with self.store._tx("cache clear", write=True) as tx:
            return max(tx.execute("DELETE FROM cache_entries WHERE namespace = ?",
                                  (namespace,)), 0)

    def purge_expired(self, namespace: str) -> int:
        with self.store._tx("cache purge", write=True) as tx:
            return max(tx.execute(
                "DELETE FROM cache_entries WHERE namespace = ? AND expires_at_ms <= ?",
                (namespace, now_ms())), 0)

    def count(self, namespace: str) -> int:
        rows = self.store._fetch(
            "cache count", "SELECT COUNT(*) FROM cache_entries WHERE namespace = ? AND "
            "(expires_at_ms IS NULL OR expires_at_ms > ?)", (namespace, now_ms()))
        return int(rows[0][0])

    # --- learned associations -------------------------------------------------------

    def save_associations(self, namespace: str,
                          rows: Iterable[tuple[str, str, float]]) -> int:
        """Replace this namespace's learned weights with `rows` in one transaction."""
        now = now_ms()
        data = [(namespace, src, dst, float(w), now) for src, dst, w in rows]
        with self.store._tx("save associations", write=True) as tx:
            tx.execute("DELETE FROM cache_associations WHERE namespace = ?", (namespace,))
            if data:
                tx.executemany(
                    "INSERT INTO cache_associations (namespace, src, dst, weight, "
                    "updated_at_ms) VALUES (?, ?, ?, ?, ?)", data)
        return len(data)

    def load_associations(self, namespace: str) -> list[tuple[str, str, float]]:
        rows = self.store._fetch(
            "load associations", "SELECT src, dst, weight FROM cache_associations "
            "WHERE namespace = ? ORDER BY weight DESC", (namespace,))
        return [(s, d, float(w)) for s, d, w in rows]

    def clear_associations(self, namespace: str) -> int:
        with self.store._tx("clear associations", write=True) as tx:
            return max(tx.execute("DELETE FROM cache_associations WHERE namespace = ?",
                                  (namespace,)), 0)
