"""The PostgreSQL backend (psycopg 3). Imported only when a postgres URL is opened.

The URL is handed to libpq as given, so `options=-csearch_path=...` selects the schema.
The connection runs in autocommit mode with explicit transaction blocks; when an error
leaves it broken it is dropped and the next call reconnects, which is what lets the
writer thread recover once the server is back.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
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


class _Watchdog:
    """Bounds a call on a silent connection (frozen server, black-holed route) where libpq
    would wait for ever: past the deadline it shuts the socket down, so the blocked read
    fails at once. One thread per bounded store; arming costs two attribute writes."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._fd = -1
        self._deadline = 0.0
        self._stop = threading.Event()
        self.fired = 0
        self._thread = threading.Thread(target=self._watch, name="supreme-pg-watchdog",
                                        daemon=True)
        self._thread.start()

    @contextmanager
    def armed(self, fd: int) -> Iterator[None]:
        self._deadline = time.monotonic() + self.timeout_s
        self._fd = fd
        try:
            yield
        finally:
            self._fd = -1

    def _watch(self) -> None:
        tick = min(0.05, self.timeout_s / 4)
        while not self._stop.wait(tick):
            fd = self._fd
            if fd >= 0 and time.monotonic() > self._deadline:
                with suppress(OSError):
                    sock = socket.socket(fileno=os.dup(fd))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()
                self.fired += 1
                self._fd = -1

    def close(self) -> None:
        self._stop.set()


class PostgresStore(Store):
    dialect = "postgresql"
    _db_errors = (psycopg.Error,)

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0,
                 call_timeout_s: float | None = None) -> None:
        super().__init__()
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_s = call_timeout_s
        self._password = urlsplit(url).password
        self._redacted = redact_url(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._watchdog = _Watchdog(call_timeout_s) if call_timeout_s is not None else None
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
        return PostgresStore(self._url, connect_timeout_s=self._connect_timeout_s,
                             call_timeout_s=self._call_timeout_s)

    def bounded_clone(self, timeout_s: float) -> PostgresStore:
        return PostgresStore(self._url, connect_timeout_s=timeout_s, call_timeout_s=timeout_s)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # libpq treats anything below 2 s as 2 s.
            extra: dict[str, Any] = {}
            if self._call_timeout_s is not None:
                # A crashed server fails fast anyway; these bound a frozen or black-holed
                # one: the kernel drops a silent socket, the server cancels a slow statement.
                extra["tcp_user_timeout"] = max(1, int(self._call_timeout_s * 1000))
            self._conn = psycopg.connect(self._url, autocommit=True,
                                         connect_timeout=max(2, round(self._connect_timeout_s)),
                                         **extra)
            if extra:
                self._conn.execute(f"SET statement_timeout = {extra['tcp_user_timeout']}")
        return self._conn

    @contextmanager
    def _bounded(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        if self._watchdog is None:
            yield
        else:
            with self._watchdog.armed(conn.pgconn.socket):
                yield

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        conn = self._connection()
        with self._bounded(conn), conn.transaction():
            if not write:
                # One snapshot for multi-statement reads such as counts() and dumps.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _PgTx(conn)

    def _single(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._connection()
        with self._bounded(conn):
            return conn.execute(_pg(sql), tuple(params)).fetchall()

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
        if self._watchdog is not None:
            self._watchdog.close()
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
            self._conn = None
