"""The PostgreSQL backend (psycopg 3). Imported only when a postgres URL is opened.

The URL is handed to libpq as given, so `options=-csearch_path=...` selects the schema.
The connection runs in autocommit mode with explicit transaction blocks; when an error
leaves it broken it is dropped and the next call reconnects, which is what lets the
writer thread recover once the server is back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg

from engine.errors import StoreError
from engine.store.base import Store, Tx, redact_url

_cursor_names = itertools.count()


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    # Statements are written with sqlite's `?`; psycopg wants `%s` and a literal `%%`.
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(_pg(sql), tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg(sql), rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_pg(sql), tuple(params)).fetchall()

    def iterate(
        self, sql: str, params: Sequence[Any] = (), chunk: int = 5000
    ) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor, so dumping a big table never holds it all in memory.
        with self._conn.cursor(name=f"supreme_cursor_{next(_cursor_names)}") as cur:
            cur.itersize = chunk
            cur.execute(_pg(sql), tuple(params))
            yield from cur


class PostgresStore(Store):
    dialect = "postgresql"
    _db_errors = (psycopg.Error,)

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        super().__init__()
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._password = urlsplit(url).password
        self._redacted = redact_url(url)
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            try:
                self._connection()
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to {self._redacted}: "
                                 f"{self._describe(exc)}") from exc

    @property
    def url_redacted(self) -> str:
        return self._redacted

    def clone(self) -> PostgresStore:
        return PostgresStore(self._url, connect_timeout_s=self._connect_timeout_s)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # libpq treats anything below 2 s as 2 s.
            self._conn = psycopg.connect(self._url, autocommit=True,
                                         connect_timeout=max(2, round(self._connect_timeout_s)))
        return self._conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        conn = self._connection()
        with conn.transaction():
            if not write:
                # One snapshot for multi-statement reads such as counts() and dumps.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _PgTx(conn)

    def _after_error(self, exc: BaseException) -> None:
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            with suppress(Exception):
                self._conn.close()
            self._conn = None

    def _describe(self, exc: BaseException) -> str:
        text = super()._describe(exc)
        return text.replace(self._password, "***") if self._password else text

    def _lock_schema(self, tx: Tx) -> None:
        # Two processes starting together must not both apply the same step.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")

    def _table_exists(self, tx: Tx, name: str) -> bool:
        return bool(tx.fetchall("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0])

    def _dialect_check(self, tx: Tx) -> str:
        return "ok" if tx.fetchall("SELECT 1")[0][0] == 1 else "SELECT 1 failed"

    def _close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._conn = None
